// The harness of exercise 01-gather-log-probs: runs `gatherLogProbs(logits:labels:)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=1` builds and runs it.
import Workshop

runExercise(Exercises.gatherLogProbs, gatherLogProbs)
