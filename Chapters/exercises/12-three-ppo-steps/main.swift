// The harness of exercise 12-three-ppo-steps: runs `maskedWhiten(values:mask:shiftMean:)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=12` builds and runs it.
import Workshop

runExercise(Exercises.maskedWhiten, maskedWhiten)
