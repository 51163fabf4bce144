// The harness of exercise 06-critic-loss: runs `criticLoss(...)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=6` builds and runs it.
import Workshop

runExercise(Exercises.criticLoss, criticLoss)
