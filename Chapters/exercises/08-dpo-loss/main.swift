// The harness of exercise 08-dpo-loss: runs `dpoLoss(...)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=8` builds and runs it.
import Workshop

runExercise(Exercises.dpoLoss, dpoLoss)
