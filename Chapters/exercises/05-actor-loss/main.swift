// The harness of exercise 05-actor-loss: runs `actorLoss(...)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=5` builds and runs it.
import Workshop

runExercise(Exercises.actorLoss, actorLoss)
