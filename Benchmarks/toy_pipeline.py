"""Chapter 10's toy pipeline in PyTorch: the TinyLM and one training step of SFT,
the reward model and PPO, for `make bench` (torch_baseline.py times them).

The same sizes and formulas as Sources/TinyLM and Sources/EndToEnd, in float64
as the Swift side computes: V = 28 (the toy language), L = 8 (a 3-token prompt
and 5 answer tokens), C = 24, H = 48; one causal self-attention block, a tanh
MLP, an LM head and a value head; Adam as torch.optim.Adam.

- SFT step (32 demonstrations): forward, the causal-LM cross-entropy on the
  shifted labels (-100 where the attention mask is 0), backward, Adam.
- Reward-model step (16 pairs, [32, 8]): forward, DeepSpeed-Chat's pairwise loss
  (RewardModel.forward: the loop over pairs, the divergence window), backward, Adam.
- PPO step (32 prompts): sample 5 tokens, the actor's, reference's, reward
  model's and critic's forward passes, then 4 epochs of: actor and critic forward,
  DeepSpeed-Chat's compute_rewards, GAE, actor and critic losses, two backward
  passes and two Adam steps (DeepSpeed-Chat's generate_experience and train_rlhf).

The token ids are random (the timing does not depend on them), drawn so every
answer has a few tokens and then padding, as the toy language's.
"""
import math

import torch

V, CONTEXT, C, H = 28, 8, 24, 48
PROMPT, ANSWER = 3, 5
PAD, EOS = 0, 1
F64 = torch.float64


class TinyLM(torch.nn.Module):
    """x = tok[ids] + pos; single-head causal attention with a residual; a tanh MLP
    with a residual; logits = g W_lm + b_lm, values = g · w_v."""

    def __init__(self, generator):
        super().__init__()

        def weight(*shape, scale):
            return torch.nn.Parameter(torch.randn(*shape, dtype=F64, generator=generator) * scale)

        self.token_embedding = weight(V, C, scale=C ** -0.5)
        self.position_embedding = weight(CONTEXT, C, scale=C ** -0.5)
        self.attention_query = weight(C, C, scale=C ** -0.5)
        self.attention_key = weight(C, C, scale=C ** -0.5)
        self.attention_value = weight(C, C, scale=C ** -0.5)
        self.attention_output = weight(C, C, scale=C ** -0.5)
        self.mlp_in = weight(C, H, scale=C ** -0.5)
        self.mlp_in_bias = torch.nn.Parameter(torch.zeros(H, dtype=F64))
        self.mlp_out = weight(H, C, scale=H ** -0.5)
        self.mlp_out_bias = torch.nn.Parameter(torch.zeros(C, dtype=F64))
        self.lm_head = weight(C, V, scale=C ** -0.5)
        self.lm_head_bias = torch.nn.Parameter(torch.zeros(V, dtype=F64))
        self.value_head = torch.nn.Parameter(torch.zeros(C, dtype=F64))

    def forward(self, ids):
        length = ids.shape[1]
        x = self.token_embedding[ids] + self.position_embedding[:length]
        q, k, v = x @ self.attention_query, x @ self.attention_key, x @ self.attention_value
        scores = q @ k.transpose(1, 2) / math.sqrt(C)
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        attention = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
        h = x + (attention @ v) @ self.attention_output
        g = h + torch.tanh(h @ self.mlp_in + self.mlp_in_bias) @ self.mlp_out + self.mlp_out_bias
        return g @ self.lm_head + self.lm_head_bias, g @ self.value_head


def random_sequences(batch, generator):
    """[batch, 8] ids: a prompt, 1-5 answer tokens (the last one <eos>), then <pad>."""
    ids = torch.randint(2, V, (batch, PROMPT + ANSWER), generator=generator)
    lengths = torch.randint(1, ANSWER + 1, (batch,), generator=generator)
    for row in range(batch):
        end = PROMPT + int(lengths[row])
        ids[row, end - 1] = EOS
        ids[row, end:] = PAD
    return ids, (ids != PAD).long()


def sft_step(model, optimizer, ids, mask):
    logits, _ = model(ids)
    labels = ids.masked_fill(mask == 0, -100)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                                             ignore_index=-100)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def pairwise_reward_loss(ids, rewards, pairs):
    """DeepSpeed-Chat RewardModel.forward's loss (num_padding_at_beginning = 0)."""
    chosen_ids, rejected_ids = ids[:pairs], ids[pairs:]
    chosen_rewards, rejected_rewards = rewards[:pairs], rewards[pairs:]
    seq_len = ids.shape[1]
    loss = 0
    for i in range(pairs):
        chosen, rejected = chosen_ids[i], rejected_ids[i]
        c_inds = (chosen == PAD).nonzero()
        c_ind = c_inds[0].item() if len(c_inds) > 0 else seq_len
        check_divergence = (chosen != rejected).nonzero()
        if len(check_divergence) == 0:
            end_ind, divergence_ind, r_ind = rejected.size(-1), rejected.size(-1) - 1, c_ind
        else:
            r_inds = (rejected == PAD).nonzero()
            r_ind = r_inds[0].item() if len(r_inds) > 0 else seq_len
            end_ind = max(c_ind, r_ind)
            divergence_ind = check_divergence[0]
        c_truncated = chosen_rewards[i][divergence_ind:end_ind]
        r_truncated = rejected_rewards[i][divergence_ind:end_ind]
        loss += -torch.nn.functional.logsigmoid(c_truncated - r_truncated).mean()
    return loss / pairs


def reward_step(model, optimizer, ids, pairs):
    _, values = model(ids)
    loss = pairwise_reward_loss(ids, values, pairs)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def gather_log_probs(logits, labels):
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def generate(actor, prompts, generator, temperature=1.0):
    rows = prompts.clone()
    ended = torch.zeros(prompts.shape[0], dtype=torch.bool)
    for _ in range(ANSWER):
        logits, _ = actor(rows)
        probabilities = torch.softmax(logits[:, -1] / temperature, dim=-1)
        token = torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)
        token = torch.where(ended, torch.full_like(token, PAD), token)
        ended = ended | (token == EOS) | (token == PAD)
        rows = torch.cat([rows, token.unsqueeze(-1)], dim=1)
    return rows


def reward_end_scores(values, ids):
    """DeepSpeed-Chat RewardModel.forward_value: the value at the last answer token."""
    scores = []
    for row in range(ids.shape[0]):
        pads = (ids[row, PROMPT:] == PAD).nonzero()
        end = PROMPT + (pads[0].item() if len(pads) > 0 else ANSWER)
        scores.append(values[row, max(end - 1, PROMPT - 1)])
    return torch.stack(scores)


def ppo_step(models, optimizers, prompts, generator, ppo_losses, epochs=4):
    actor, reference, reward_model, critic = models
    actor_optimizer, critic_optimizer = optimizers
    sequences = generate(actor, prompts, generator)
    attention_mask = (sequences != PAD).long()
    with torch.no_grad():
        log_probs = gather_log_probs(actor(sequences)[0][:, :-1], sequences[:, 1:])
        ref_log_probs = gather_log_probs(reference(sequences)[0][:, :-1], sequences[:, 1:])
        reward_score = reward_end_scores(reward_model(sequences)[1], sequences)
        values = critic(sequences)[1][:, :-1]
    for _ in range(epochs):
        new_log_probs = gather_log_probs(actor(sequences)[0][:, :-1], sequences[:, 1:])
        new_values = critic(sequences)[1][:, :-1]
        actor_loss, critic_loss = ppo_losses(attention_mask, log_probs, ref_log_probs, values, new_log_probs,
                                             new_values, reward_score, PROMPT)
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_optimizer.step()
    return actor_loss, critic_loss


def cases(ppo_losses):
    """(stage, shape, make) for torch_baseline.py's bench: make() builds the models
    and data and returns the step to time."""
    def sft():
        generator = torch.Generator().manual_seed(1)
        model = TinyLM(generator)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        ids, mask = random_sequences(32, generator)
        return lambda: sft_step(model, optimizer, ids, mask)

    def reward():
        generator = torch.Generator().manual_seed(2)
        model = TinyLM(generator)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
        chosen, _ = random_sequences(16, generator)
        rejected = chosen.clone()
        rejected[:, PROMPT] = (chosen[:, PROMPT] + 1) % (V - 2) + 2  # the pair diverges at the first answer token
        ids = torch.cat([chosen, rejected])
        return lambda: reward_step(model, optimizer, ids, 16)

    def ppo():
        generator = torch.Generator().manual_seed(3)
        actor, critic = TinyLM(generator), TinyLM(generator)
        reference, reward_model = TinyLM(generator), TinyLM(generator)
        for frozen in (reference, reward_model):
            frozen.requires_grad_(False)
        optimizers = (torch.optim.Adam(actor.parameters(), lr=1e-3), torch.optim.Adam(critic.parameters(), lr=3e-3))
        prompts = torch.randint(2, V, (32, PROMPT), generator=generator)
        return lambda: ppo_step((actor, reference, reward_model, critic), optimizers, prompts, generator, ppo_losses)

    return [("toy_sft_step", (32, PROMPT + ANSWER), sft), ("toy_reward_step", (32, PROMPT + ANSWER), reward),
            ("toy_ppo_step", (32, PROMPT + ANSWER), ppo)]
