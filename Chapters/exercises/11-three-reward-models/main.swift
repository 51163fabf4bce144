// The harness of exercise 11-three-reward-models: runs `rewardEndScoresAttn(scores:attentionMask:)` from Exercise.swift on every
// fixture of the stage under GoldenData/ and prints one row per fixture, with a
// diagnosis under each failed row. `make exercise N=11` builds and runs it.
import Workshop

runExercise(Exercises.rewardEndScoresAttn, rewardEndScoresAttn)
