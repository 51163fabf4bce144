// The harness of exercise 15-critic-free-advantages: runs `groupAdvantages(...)` from Exercise.swift
// on the fixtures of its part of group_advantages under GoldenData/ and prints one row per
// fixture, with a diagnosis under each failed row. `make exercise N=15` builds and runs it.
import Workshop

runExercise(Exercises.groupAdvantages, groupAdvantages)
