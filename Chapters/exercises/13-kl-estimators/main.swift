// The harness of exercise 13-kl-estimators: runs `klEstimators(...)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=13` builds and runs it.
import Workshop

runExercise(Exercises.klEstimators, klEstimators)
