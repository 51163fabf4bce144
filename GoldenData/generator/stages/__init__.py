"""The fixture stages, in the order they are generated and listed by --list.

To add a stage: write stages/<stage>.py (its reference implementation, its cases,
and at the end `STAGE = Stage("<stage>", implementation, CASES, catalog_prefixes=(WHAT,))`),
then add "<stage>" to STAGE_NAMES below. The file name, the stage name and the
fixture folder GoldenData/<stage>/ are the same.
"""

import importlib

STAGE_NAMES = [
    "gather_log_probs",
    "reward_pairwise_loss",
    "reward_end_scores",
    "compute_rewards",
    "gae",
    "actor_loss",
    "critic_loss",
    "dpo_loss",
    "ppo_losses",
    "sft_loss",   # added after v1
    "tiny_lm",    # added after v1: the end-to-end chapter's model
    # v1.1, the seed systems (shared/spec/v1.1-seed-systems.md)
    "reward_end_scores_attn",
    "reward_end_loss_sqreg",
    "reward_end_scores_seqcls",
    "reward_end_loss_margin_center",
    "rewards_kl_end_clamped",
    "gae_masked",
    "actor_loss_seq_mean",
    "critic_loss_seq_mean",
    "ppo_losses_seq_mean",
    "masked_whiten",
    "rewards_kl_first_pad",
    "ppo_losses_joint_whitened",
    # v1.1, the zoo (shared/spec/v1.1-zoo.md)
    "group_advantages",
    "token_advantages",
    "ppo_policy_loss",
    "grpo_loss",
]

STAGES = [importlib.import_module(f"{__name__}.{name}").STAGE for name in STAGE_NAMES]

for _name, _stage in zip(STAGE_NAMES, STAGES):
    assert _stage.name == _name, f"stages/{_name}.py declares the stage {_stage.name!r}"
