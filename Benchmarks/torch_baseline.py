#!/usr/bin/env python3
"""PyTorch CPU baseline for `make bench`: the shapes rlhf-bench times, in torch.

Each case is what DeepSpeed-Chat runs (dschat/rlhf/ppo_trainer.py): log_softmax
then gather, autograd through it, the Python loop over time for GAE, the loss
functions, and train_rlhf's data flow; TRL's PPO step's new log-probs and entropy
(log_softmax, softmax and their product: three [B, T, V] tensors); and chapter
10's toy pipeline (Benchmarks/toy_pipeline.py): one SFT, reward-model and PPO
training step of the TinyLM. One warm-up run, then the median of 5
(of 51 for a kernel under 10 ms).

    python3 Benchmarks/torch_baseline.py [--threads N] [STAGE ...]

Prints a detail line per case, then `ROW <stage> <shape> float32 <ms>` lines
that `make bench` joins with rlhf-bench's. --threads defaults to every core,
as rlhf-bench uses (Dispatch over all cores).
"""
import argparse
import os
import statistics
import time

import torch

import toy_pipeline


def peak_reset():
    """Resets the kernel's RSS high-water mark (VmHWM) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_bytes(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bench(rows, only, stage, shape, elements, make, runs=5, dtype="float32"):
    if only and stage not in only:
        return
    rss_before = status_bytes("VmRSS")
    kernel = make()
    tracked = peak_reset()
    start = time.perf_counter()
    kernel()  # warm-up
    if time.perf_counter() - start < 0.01:
        runs = 51  # a kernel under 10 ms: more runs, so the median is not one noisy sample
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        kernel()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    high = status_bytes("VmHWM")
    peak = f"{(high - rss_before) / 1e6:.1f} MB" if tracked and high and rss_before else "-"
    label = "x".join(map(str, shape))
    print(f"{stage:<26}{label:<16}{seconds * 1e3:>9.2f} ms  {elements / seconds / 1e9:6.2f} G elem/s  peak {peak}",
          flush=True)
    del kernel
    rows.append((stage, label, dtype, seconds * 1e3))


# DeepSpeed-Chat's functions, as in dschat/rlhf/ppo_trainer.py.

def gather_log_probs(logits, labels):
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)


def log_probs_with_entropy(logits, labels, temperature):
    """TRL's PPO step (trl/experimental/ppo/ppo_trainer.py, PPOTrainer.train): the
    new log-probs and the per-token entropy of the tempered logits."""
    logits = logits / (temperature + 1e-7)
    new_logprobs = gather_log_probs(logits, labels)
    prob_dist = torch.nn.functional.softmax(logits, dim=-1)
    entropy = torch.logsumexp(logits, dim=-1) - torch.sum(prob_dist * logits, dim=-1)
    return new_logprobs, entropy


def get_advantages_and_returns(values, rewards, start, gamma=1.0, lam=0.95):
    lastgaelam = 0
    advantages_reversed = []
    length = rewards.size()[-1]
    for t in reversed(range(start, length)):
        nextvalues = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    returns = advantages + values[:, start:]
    return advantages.detach(), returns


def actor_loss_fn(logprobs, old_logprobs, advantages, mask, cliprange=0.2):
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return torch.sum(torch.max(pg_loss1, pg_loss2) * mask) / mask.sum()


def critic_loss_fn(values, old_values, returns, mask, cliprange_value=0.2):
    values_clipped = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    vf_loss1 = (values - returns) ** 2
    vf_loss2 = (values_clipped - returns) ** 2
    return 0.5 * torch.sum(torch.max(vf_loss1, vf_loss2) * mask) / mask.sum()


def compute_rewards(start, log_probs, ref_log_probs, reward_score, action_mask, kl_ctl=0.1, clip_reward_value=5.0):
    rewards = -kl_ctl * (log_probs - ref_log_probs)
    ends = start + action_mask[:, start:].sum(1) + 1
    reward_clip = torch.clamp(reward_score, -clip_reward_value, clip_reward_value)
    for j in range(log_probs.shape[0]):
        rewards[j, start:ends[j]][-1] += reward_clip[j]
    return rewards


def ppo_step(attention_mask, log_probs, ref_log_probs, values, new_log_probs, new_values, reward_score, prompt_length):
    start = prompt_length - 1
    action_mask = attention_mask[:, 1:]
    old_rewards = compute_rewards(start, log_probs, ref_log_probs, reward_score, action_mask)
    old_values = values.clone()
    ends = start + action_mask[:, start:].sum(1) + 1
    for i in range(old_rewards.shape[0]):
        old_rewards[i, ends[i]:] = 0
        old_values[i, ends[i]:] = 0
    advantages, returns = get_advantages_and_returns(old_values, old_rewards, start)
    actor = actor_loss_fn(new_log_probs[:, start:], log_probs[:, start:], advantages, action_mask[:, start:])
    critic = critic_loss_fn(new_values[:, start:], old_values[:, start:], returns, action_mask[:, start:])
    return actor, critic


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("stages", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(2026)
    only = set(args.stages)
    rows = []
    print(f"torch {torch.__version__} CPU, {torch.get_num_threads()} threads, median of 5 runs (51 under 10 ms) after one warm-up")
    print()

    def logits_and_labels(b, t, v):
        return torch.rand(b, t, v) * 16 - 8, torch.randint(0, v, (b, t))

    for b, t, v in [(4, 512, 50272), (8, 256, 32000), (1, 2048, 151936)]:
        elements = b * t * v

        def read(b=b, t=t, v=v):
            x = torch.rand(b, t, v)
            return lambda: x.sum()
        bench(rows, only, "read_logits", (b, t, v), elements, read)

        def forward(b=b, t=t, v=v):
            logits, labels = logits_and_labels(b, t, v)
            return lambda: gather_log_probs(logits, labels)
        bench(rows, only, "gather_log_probs", (b, t, v), elements, forward)

        def backward(b=b, t=t, v=v):
            logits, labels = logits_and_labels(b, t, v)
            upstream = torch.rand(b, t) * 2 - 1

            def run():
                x = logits.detach().requires_grad_()
                gather_log_probs(x, labels).backward(upstream)
                return x.grad
            return run
        bench(rows, only, "gather_log_probs_grad", (b, t, v), elements, backward)

        def entropy(b=b, t=t, v=v):
            logits, labels = logits_and_labels(b, t, v)
            return lambda: log_probs_with_entropy(logits, labels, 0.7)
        bench(rows, only, "log_probs_with_entropy", (b, t, v), elements, entropy)

    def forward_small():
        logits, labels = logits_and_labels(1, 512, 50272)
        return lambda: gather_log_probs(logits, labels)
    bench(rows, only, "gather_log_probs", (1, 512, 50272), 512 * 50272, forward_small)

    for b, n in [(64, 1024), (64, 2048)]:
        def gae(b=b, n=n):
            values, rewards = torch.rand(b, n) * 2 - 1, torch.rand(b, n) * 2 - 1
            return lambda: get_advantages_and_returns(values, rewards, 0)
        bench(rows, only, "gae", (b, n), b * n, gae)

    b, n = 64, 2048
    mask = (torch.arange(b * n).reshape(b, n) % 7 != 0).float()

    def actor():
        logprobs, old = torch.rand(b, n) * -3, torch.rand(b, n) * -3
        advantages = torch.rand(b, n) * 2 - 1
        return lambda: actor_loss_fn(logprobs, old, advantages, mask)
    bench(rows, only, "actor_loss", (b, n), b * n, actor)

    def critic():
        values, old, returns = (torch.rand(b, n) * 2 - 1 for _ in range(3))
        return lambda: critic_loss_fn(values, old, returns, mask)
    bench(rows, only, "critic_loss", (b, n), b * n, critic)

    def rewards():
        log_probs, ref_log_probs = torch.rand(b, n) * -3, torch.rand(b, n) * -3
        reward_score = torch.rand(b) * 2 - 1
        action_mask = mask.long()
        return lambda: compute_rewards(0, log_probs, ref_log_probs, reward_score, action_mask)
    bench(rows, only, "compute_rewards", (b, n), b * n, rewards)

    for b, length in [(16, 1024), (64, 2048)]:
        def step(b=b, length=length):
            n = length - 1
            prompt_length = length // 4
            attention_mask = torch.zeros(b, length, dtype=torch.long)
            for row in range(b):
                attention_mask[row, :prompt_length + (row + 1) * (length - prompt_length) // b] = 1
            inputs = [torch.rand(b, n) * -2 for _ in range(5)]
            reward_score = torch.rand(b) * 2 - 1
            return lambda: ppo_step(attention_mask, *inputs, reward_score, prompt_length)
        bench(rows, only, "ppo_step", (b, length), b * (length - 1), step)

    # Chapter 10's toy pipeline: one SFT, reward-model and PPO step of the TinyLM.
    for stage, shape, make in toy_pipeline.cases(ppo_step):
        bench(rows, only, stage, shape, shape[0] * shape[1], make, dtype="float64")

    print()
    for stage, label, dtype, ms in rows:
        print(f"ROW {stage} {label} {dtype} {ms:.2f}")


if __name__ == "__main__":
    main()
