// The harness of exercise 03-compute-rewards: runs `computeRewards(...)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=3` builds and runs it.
import Workshop

runExercise(Exercises.computeRewards, computeRewards)
