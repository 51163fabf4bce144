// The harness of exercise 14-dpo-family: runs `dpoVariants(...)` from Exercise.swift on the
// fixtures of its four loss types under GoldenData/dpo_variants and prints one row per
// fixture, with a diagnosis under each failed row. `make exercise N=14` builds and runs it.
import Workshop

runExercise(Exercises.dpoVariants, dpoVariants)
