// The harness of exercise 07-ppo-step: runs `ppoStep(_:)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=7` builds and runs it.
import Workshop

runExercise(Exercises.ppoStep, ppoStep)
