import Foundation
import Testing
import TensorCore
import Golden
import TestSupport
@testable import Workshop

/// Every fixture of `stage` that expects outputs, loaded.
func outputFixtures(stage: String) -> [Fixture] {
    fixtureFiles(stage: stage).compactMap { try? Fixture.load(path: $0) }.filter {
        if case .outputs = $0.expectation { return true }
        return false
    }
}

/// The expected outputs and tolerance of a fixture that expects outputs.
func expectation(_ fixture: Fixture) -> (outputs: [String: FixtureTensor], tolerance: Tolerance)? {
    guard case .outputs(let outputs, let tolerance) = fixture.expectation else { return nil }
    return (outputs, tolerance)
}

@Suite("the mistake catalogue")
struct MistakeCatalogueTests {
    @Test("at least 25 mistakes, ids unique and prefixed by a registered stage, each with a title, an explanation and a chapter that exists")
    func shape() throws {
        #expect(allMistakes.count >= 25, "only \(allMistakes.count) mistakes")
        let ids = allMistakes.map(\.id)
        #expect(Set(ids).count == ids.count, "repeated ids in \(ids)")
        let registered = Set(stageRegistry.map { $0.declaration.name })
        let entries = mistakeCatalogue.map(\.stage)
        #expect(Set(entries).count == entries.count, "a stage with two catalogue entries: \(entries)")
        for entry in mistakeCatalogue {
            #expect(registered.contains(entry.stage), "catalogue entry for unknown stage \(entry.stage)")
            #expect(!entry.mistakes.isEmpty, "\(entry.stage) has an entry but no mistake")
            for mistake in entry.mistakes {
                #expect(mistake.stage == entry.stage, "\(mistake.id) is listed under \(entry.stage)")
                #expect(mistake.id.hasPrefix(entry.stage + "."), "\(mistake.id) does not start with \(entry.stage).")
                #expect(!mistake.title.isEmpty && !mistake.title.contains("\n"), "\(mistake.id): title")
                let sentences = mistake.explanation.split(separator: ". ").count
                #expect((2...4).contains(sentences), "\(mistake.id): \(sentences) sentences of explanation")
                let readme = goldenDataDirectory.replacingOccurrences(of: "/GoldenData", with: "/\(mistake.chapter)/README.md")
                #expect(FileManager.default.fileExists(atPath: readme), "\(mistake.id): no \(readme)")
            }
        }
    }

    @Test("the v1 stages, the seed-system stages with a well-known mistake and the zoo stages each have an entry")
    func coverage() {
        let covered = Set(mistakeCatalogue.map(\.stage))
        for stage in ["gather_log_probs", "reward_pairwise_loss", "reward_end_scores", "compute_rewards", "gae", "actor_loss",
                      "critic_loss", "dpo_loss", "ppo_losses", "sft_loss", "reward_end_scores_attn", "reward_end_loss_sqreg",
                      "reward_end_scores_seqcls", "reward_end_loss_margin_center", "rewards_kl_end_clamped", "gae_masked",
                      "actor_loss_seq_mean", "critic_loss_seq_mean", "masked_whiten", "rewards_kl_first_pad",
                      // v1.1, the zoo.
                      "kl_estimators", "adaptive_kl_controller", "dpo_variants", "cpo_loss", "orpo_loss", "kto_loss",
                      "group_advantages", "token_advantages", "ppo_policy_loss", "grpo_loss"] {
            #expect(covered.contains(stage), "no mistakes for \(stage)")
        }
    }

    @Test("each mistake, fed as an answer, fails a committed fixture of its stage and is named there (and wherever it fails)",
          arguments: allMistakes.map(\.id))
    func namedWhenFed(id: String) throws {
        let mistake = try #require(allMistakes.first { $0.id == id })
        var separating = [String]()
        for fixture in outputFixtures(stage: mistake.stage) {
            let (expected, _) = try #require(expectation(fixture))
            guard let wrong = try? mistake.wrongOutputs(FixtureArguments<Double>(fixture)) else { continue }
            let submitted = wrong.filter { expected[$0.key] != nil }
            guard !submitted.isEmpty else { continue }
            let outcome = checkAnswer(fixture, submitted: submitted)
            if outcome.passed { continue }
            separating.append(fixture.name)
            let named = outcome.diagnosis?.named.map(\.id) ?? []
            #expect(named.contains(id), "\(mistake.stage)/\(fixture.name): the answer of \(id) fails, named: \(named)")
        }
        #expect(!separating.isEmpty, "no committed fixture of \(mistake.stage) tells \(id) from the right answer")
    }

    @Test("no mistake is named for the right answer of any committed fixture: the expected outputs, and the library's own",
          arguments: stageRegistry.map { $0.declaration.name })
    func rightAnswersNameNothing(stage: String) throws {
        for fixture in outputFixtures(stage: stage) {
            let (expected, tolerance) = try #require(expectation(fixture))
            let fromExpected = checkAnswer(fixture, submitted: expected)
            #expect(fromExpected.passed && fromExpected.diagnosis == nil, "\(stage)/\(fixture.name): \(fromExpected.message)")
            let library = try runStage(fixture).filter { expected[$0.key] != nil }
            let fromLibrary = checkAnswer(fixture, submitted: library)
            #expect(fromLibrary.passed && fromLibrary.diagnosis == nil, "\(stage)/\(fixture.name): \(fromLibrary.message)")
            // Asked directly, no mistake claims the library's numbers either.
            for mistake in mistakes(of: stage) {
                #expect(!reproduces(mistake, fixture, submitted: library, right: expected, tolerance: tolerance),
                        "\(mistake.id) claims the right answer of \(stage)/\(fixture.name)")
            }
        }
    }

    @Test("the teacher's guide names every catalogued mistake and every exercise")
    func guideCoversCatalogue() throws {
        let guide = try String(contentsOfFile: goldenDataDirectory.replacingOccurrences(of: "/GoldenData", with: "/Chapters/WORKSHOP.md"),
                               encoding: .utf8)
        for mistake in allMistakes {
            #expect(guide.contains("`\(mistake.id)`"), "Chapters/WORKSHOP.md does not name \(mistake.id)")
        }
        for slug in Exercises.slugs {
            #expect(guide.contains("make exercise N=\(Int(slug.prefix(2))!)"), "Chapters/WORKSHOP.md has no exercise \(slug)")
        }
    }

    @Test("a wrong answer no mistake explains: the first differing element, with what the right GAE value is made of")
    func firstDifference() throws {
        let fixture = try #require(outputFixtures(stage: "gae").first { $0.name == "random-1-f64" })
        let (expected, _) = try #require(expectation(fixture))
        guard case .float64(var advantages) = try #require(expected["advantages"]) else {
            Issue.record("advantages are not float64")
            return
        }
        advantages[0, 6] += 0.5
        let outcome = checkAnswer(fixture, submitted: ["advantages": .float64(advantages)])
        #expect(!outcome.passed)
        let diagnosis = try #require(outcome.diagnosis)
        #expect(diagnosis.named.isEmpty, "\(diagnosis.named.map(\.id))")
        let difference = try #require(diagnosis.firstDifference)
        #expect(difference.output == "advantages" && difference.index == [0, 6])
        #expect(difference.got == advantages[0, 6])
        let text = diagnosisLines(diagnosis).joined(separator: "\n")
        for part in ["advantages[0, 6]", "delta_t = r_t + γ·V_t+1 - V_t", "A_t+1 =", "V_t+1 ="] {
            #expect(text.contains(part), "\(part) missing from:\n\(text)")
        }
    }

    @Test("the stages that can say what a right value is made of say it under a first difference no mistake explains",
          arguments: ["gather_log_probs", "compute_rewards", "gae", "actor_loss", "critic_loss", "dpo_loss", "masked_whiten",
                     "kl_estimators", "group_advantages", "grpo_loss"])
    func madeOf(stage: String) throws {
        let order = try stageAdapter(named: stage).declaration.outputs
        var explained = 0
        for fixture in outputFixtures(stage: stage).prefix(6) {
            let (expected, _) = try #require(expectation(fixture))
            let name = try #require(order.first { expected[$0] != nil })
            let want = try #require(expected[name])
            guard want.isFloat, !want.doubles.isEmpty, want.doubles[0].isFinite else { continue }
            // 1000 off at the first element: no mistake is that far off.
            var values = want.doubles
            values[0] += 1000
            let outcome = checkAnswer(fixture, submitted: [name: .float64(Tensor.make(want.shape, values))])
            let diagnosis = try #require(outcome.diagnosis)
            #expect(diagnosis.named.isEmpty, "\(stage)/\(fixture.name): \(diagnosis.named.map(\.id))")
            let difference = try #require(diagnosis.firstDifference)
            #expect(difference.output == name && difference.index == Array(repeating: 0, count: want.shape.count))
            #expect(!difference.madeOf.isEmpty, "\(stage)/\(fixture.name): nothing said about \(name)")
            explained += 1
        }
        #expect(explained > 0)
    }

    @Test("a shape that differs is reported as such, and a mistake of that shape is named (gae.whole-row, gather_log_probs.shifted-twice)")
    func shapeMistakes() throws {
        for (stage, id) in [("gae", "gae.whole-row"), ("gather_log_probs", "gather_log_probs.shifted-twice")] {
            let mistake = try #require(allMistakes.first { $0.id == id })
            let fixture = try #require(outputFixtures(stage: stage).first { fixture in
                guard let wrong = try? mistake.wrongOutputs(FixtureArguments<Double>(fixture)),
                      let (expected, _) = expectation(fixture) else { return false }
                return wrong.contains { name, tensor in expected[name].map { $0.shape != tensor.shape } ?? false }
            })
            let (expected, _) = try #require(expectation(fixture))
            let wrong = try mistake.wrongOutputs(FixtureArguments<Double>(fixture)).filter { expected[$0.key] != nil }
            let outcome = checkAnswer(fixture, submitted: wrong)
            #expect(outcome.message.contains("expected shape"), "\(outcome.message)")
            let named: [String] = outcome.diagnosis?.named.map { $0.id } ?? []
            #expect(named == [id], "\(named)")
        }
    }
}
