// Chapter 00 · The map: four models, three steps, one PPO step.
//
// Reads top to bottom: the four models of RLHF and where each comes from, the
// SFT -> reward model -> PPO pipeline, training mode against inference mode,
// every tensor of one PPO step with its shape on a real fixture, and that step
// run through `ppoLosses` (Sources/PPOStep) and checked against PyTorch. The
// last section says which chapter explains which piece. Run it with
// `make chapter N=0`.

import ChapterSupport
import Golden
import PPOStep
import TensorCore

let chapter = Chapter(number: 0, title: "The map: four models, three steps, one PPO step")
chapter.say("""
RLHF as DeepSpeed-Chat runs it: train a chat model (SFT), train a model that scores answers
(the reward model), then improve the chat model against that score with PPO. This chapter is
the map; chapters 01 to 08 take the pieces one at a time, 09 derives their gradients, and 10
trains a tiny model through all of it.
""")

// MARK: 1. The four models

chapter.heading("1. The four models of the PPO step")
var models = Table(["model", "initialised from", "reads", "gives", "trained in PPO?"])
models.add(["actor (policy)", "step-1 SFT model", "prompts, then seq", "seq; log_probs [B, N]", "yes: actor_loss"])
models.add(["reference", "step-1 SFT model", "seq", "ref_log_probs [B, N]", "no (frozen)"])
models.add(["reward", "step-2 reward model", "seq", "reward_score [B]", "no (frozen)"])
models.add(["critic (value)", "step-2 reward model", "seq", "values [B, N]", "yes: critic_loss"])
chapter.show(models)
chapter.say("""
The actor is the model being improved: it writes the answers, and it is the chat model at the
end. The reference is a frozen copy of the same SFT model; the KL penalty against it keeps the
actor from drifting into answers that fool the reward model. Actor and reference end in the
language-model head, Linear(hidden, V): logits [B, L, V].

The reward model is a language model whose head was swapped for a value head, Linear(hidden, 1),
one number per token; trained on chosen/rejected pairs in step 2, it scores a whole answer with
the number at the answer's last token. The critic starts as a copy of it and learns V_t, the
return expected from each position on: the reward model scores only the end, the critic fills
in every token before it.
""")

// MARK: 2. Three steps

chapter.heading("2. The pipeline: SFT, then the reward model, then PPO")
chapter.say("""
  step 1  SFT           a pretrained LM, trained with cross-entropy on prompt + chosen answer
                        -> the SFT model
  step 2  reward model  a pretrained LM + value head, trained with the pairwise loss on
                        (prompt, chosen, rejected)                        -> the reward model
  step 3  PPO           actor, reference <- SFT model; critic, reward <- reward model
                        repeat: generate_experience (actor writes, all four score)
                                train_rlhf (losses; actor and critic take a step)
DeepSpeed-Chat's examples start step 2 from a smaller pretrained model than step 1 (an OPT-350m
reward model for an OPT-1.3b actor); other recipes start it from the SFT model itself.
""")

// MARK: 3. Training mode and inference mode

chapter.heading("3. Inference mode and training mode (an illustration, not a fixture)")
let prompt = ["zhong", "guo", "de", "shou", "du", "shi", "na", "li", "?"]
let answer = ["shou", "du", "shi", "nan", "jing", "<eos>"]
let sequence = prompt + answer
let promptWidth = prompt.count, illustrationStart = promptWidth - 1
chapter.say("""
The seed article's prompt, "where is China's capital?", one syllable per token (P = \(promptWidth)),
and the answer "the capital is Nanjing" with its end token. Inference mode is real
autoregression: one forward per new token, the sampled token appended to the input:
""")
var inference = Table(["step", "input so far", "tokens", "next token"])
for k in 0..<answer.count {
    let written = answer[0..<k].joined(separator: " ")
    inference.add([String(k + 1), "<prompt>" + (written.isEmpty ? "" : " " + written), String(promptWidth + k),
                   answer[k]])
}
chapter.show(inference)
chapter.say("""
That is how the actor writes seq (generate_experience). Training mode (teacher forcing) takes
the finished sequence in one forward; the causal mask lets position t see only tokens 0..t, and
the logits at t are scored against the token that really came next, t + 1:
""")
var training = Table(["t", "x_t", "logits at t score", "part"])
for t in 0..<sequence.count {
    let part = t < illustrationStart ? "prompt: not an action"
        : t == sequence.count - 1 ? "dropped: logits[:, :-1]" : "action a_t (start = \(illustrationStart))"
    training.add([String(t), sequence[t], t + 1 < sequence.count ? "x_\(t + 1) = \(sequence[t + 1])" : "(nothing)",
                  t == illustrationStart ? part : (t > illustrationStart && t < sequence.count - 1 ? "action" : part)])
}
chapter.show(training, maximumRows: sequence.count)
chapter.say("""
L = \(sequence.count) tokens give N = L - 1 = \(sequence.count - 1) log-prob positions. The first answer \
token is scored at
start = P - 1 = \(illustrationStart), the end token at N - 1 = \(sequence.count - 2). In one PPO step \
all four models score seq in
training mode: actor and reference for log-probs (chapter 01), reward and critic for values.
""")

// MARK: 4. Every tensor of one PPO step

chapter.heading("4. Every tensor of one PPO step, with its shape")
let fixture = chapter.fixture("ppo_losses/right-padded-answers-f64")
let attentionMask = chapter.intInput(fixture, "attention_mask")
let logProbs = chapter.floatInput(fixture, "log_probs")
let rewardScore = chapter.floatInput(fixture, "reward_score")
let promptLength = chapter.intParam(fixture, "prompt_length")
let batchSize = attentionMask.shape[0], length = attentionMask.shape[1], positions = logProbs.shape[1]
let step = chapter.must {
    try ppoLosses(attentionMask: attentionMask, logProbs: logProbs,
                  refLogProbs: chapter.floatInput(fixture, "ref_log_probs"),
                  values: chapter.floatInput(fixture, "values"),
                  newLogProbs: chapter.floatInput(fixture, "new_log_probs"),
                  newValues: chapter.floatInput(fixture, "new_values"),
                  rewardScore: rewardScore, promptLength: promptLength,
                  klCtl: chapter.realParam(fixture, "kl_ctl"),
                  clipRewardValue: chapter.realParam(fixture, "clip_reward_value"),
                  cliprange: chapter.realParam(fixture, "cliprange"),
                  cliprangeValue: chapter.realParam(fixture, "cliprange_value"),
                  gamma: chapter.realParam(fixture, "gamma"), lambda: chapter.realParam(fixture, "lambda"))
}
let width = step.advantages.shape[1]
chapter.say("""
Sizes from GoldenData/ppo_losses/right-padded-answers-f64.json: B = \(batchSize) rows, L = \(length) \
tokens,
prompt width P = \(promptLength), so N = L - 1 = \(positions), start = P - 1 = \(step.start) and M = \
N - start = \(width) answer
positions. V, the vocabulary, only lives inside the model forwards, which the fixture replaces by
their outputs.
""")
func shape(_ symbols: String, _ sizes: [Int]) -> String { "\(symbols)=\(describe(shape: sizes))" }
func shape(_ symbols: String, _ sizes: String) -> String { "\(symbols)=\(sizes)" }
chapter.say("")
chapter.say("Rollout: generate_experience, under torch.no_grad()")
var rollout = Table(["tensor", "shape", "dtype", "made by", "used by"])
rollout.add(["prompts", shape("[B,P]", [batchSize, promptLength]), "int64", "dataloader, left-padded",
             "actor.generate"])
rollout.add(["seq", shape("[B,L]", attentionMask.shape), "int64", "actor.generate", "all four forwards"])
rollout.add(["attention_mask", shape("[B,L]", attentionMask.shape), "int64", "seq != pad_id",
             "forwards, action_mask"])
rollout.add(["logits", shape("[B,L,V]", "[\(batchSize), \(length), V]"), "float", "actor forward",
             "gather_log_probs"])
rollout.add(["logits_ref", shape("[B,L,V]", "[\(batchSize), \(length), V]"), "float", "reference forward",
             "gather_log_probs"])
rollout.add(["log_probs", shape("[B,N]", logProbs.shape), "float", "gather(logits[:,:-1])",
             "rewards, actor loss"])
rollout.add(["ref_log_probs", shape("[B,N]", logProbs.shape), "float", "gather(logits_ref)", "compute_rewards"])
rollout.add(["reward_score", shape("[B]", rewardScore.shape), "float", "reward: end score",
             "compute_rewards"])
rollout.add(["values", shape("[B,N]", logProbs.shape), "float", "critic, [:, :-1]", "old_values"])
chapter.show(rollout)
chapter.say("")
chapter.say("Training: train_rlhf")
var train = Table(["tensor", "shape", "dtype", "made by", "used by"])
train.add(["start", "scalar=\(step.start)", "int", "P - 1", "every [:, start:]"])
train.add(["action_mask", shape("[B,N]", step.actionMask.shape), "int64", "attention_mask[:, 1:]",
           "rewards, ends, losses"])
train.add(["ends", shape("[B]", [step.ends.count]), "int64", "start + n + 1", "the zeroing"])
train.add(["rewards", shape("[B,N]", step.rewards.shape), "float", "compute_rewards, zeroed", "gae"])
train.add(["old_values", shape("[B,N]", step.oldValues.shape), "float", "values, zeroed", "gae, critic loss"])
train.add(["advantages", shape("[B,M]", step.advantages.shape), "float", "gae", "actor loss"])
train.add(["returns", shape("[B,M]", step.returns.shape), "float", "gae: A + V", "critic loss"])
train.add(["new_log_probs", shape("[B,N]", logProbs.shape), "float", "actor forward again",
           "actor loss [:,start:]"])
train.add(["new_values", shape("[B,N]", logProbs.shape), "float", "critic forward again",
           "critic loss [:,start:]"])
train.add(["actor_loss", "[]", "float", "actor_loss_fn", "actor step"])
train.add(["critic_loss", "[]", "float", "critic_loss_fn", "critic step"])
chapter.show(train)
chapter.say("""
float is the model's dtype in DeepSpeed-Chat (fp16 by default, bf16 on request); the fixtures
are float64. Only new_log_probs and new_values carry gradients: everything from the rollout is a
constant to the losses.
""")

// MARK: 5. The step, run and checked

chapter.heading("5. The step, run: ppoLosses on the fixture")
chapter.say("""
ppoLosses chains compute_rewards, the zeroing past each row's end, GAE and the two losses
(chapter 07 shows every intermediate). Per row:
""")
var rows = Table(["row b", "answer tokens n", "ends = start + n + 1", "score at t*"])
for b in 0..<batchSize {
    let n = step.ends[b] - step.start - 1
    rows.add([String(b), String(n), String(step.ends[b]), String(min(step.ends[b], positions) - 1)])
}
chapter.show(rows)
chapter.say("""
The actor loss averages over the \(step.actor.tokenCount) answer tokens of the batch: \
actor_loss = \(fmt(step.actor.loss, 6)),
critic_loss = \(fmt(step.critic.loss, 6)). Beside PyTorch's:
""")
chapter.check("advantages", ours: step.advantages, against: fixture)
chapter.check("returns", ours: step.returns, against: fixture)
chapter.check("actor_loss", ours: step.actor.loss, against: fixture)
chapter.check("critic_loss", ours: step.critic.loss, against: fixture)

// MARK: 6. Chapter guide

chapter.heading("6. Where each piece is explained")
var guide = Table(["chapter", "stage", "tensors"])
guide.add(["01", "gather_log_probs", "logits [B,L,V] -> log_probs, ref_log_probs [B,N]"])
guide.add(["02", "reward model", "pairwise loss on chosen/rejected; end scores -> reward_score [B]"])
guide.add(["03", "compute_rewards", "KL penalty + clipped score -> rewards [B,N]"])
guide.add(["04", "GAE", "rewards, old_values -> advantages, returns [B,M]"])
guide.add(["05", "actor loss", "ratio, clip, token-mean -> actor_loss []"])
guide.add(["06", "critic loss", "value clip, 0.5 * max -> critic_loss []"])
guide.add(["07", "one PPO step", "all of the above on one batch"])
guide.add(["08", "DPO", "no reward model, no critic: one loss on preference pairs"])
guide.add(["09", "gradients", "every loss's backward pass, by hand, checked against autograd"])
guide.add(["10", "end to end", "a tiny LM through SFT, reward model, PPO and DPO, with a plot"])
chapter.show(guide)

chapter.finish()
