// The harness of exercise 04-gae: runs `gae(values:rewards:start:gamma:lambda:)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=4` builds and runs it.
import Workshop

runExercise(Exercises.gae, gae)
