// The harness of exercise 02-pairwise-reward-loss: runs `pairwiseRewardLoss(...)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=2` builds and runs it.
import Workshop

runExercise(Exercises.pairwiseRewardLoss, pairwiseRewardLoss)
