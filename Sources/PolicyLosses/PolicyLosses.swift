// PolicyLosses: OpenRLHF's PPO policy loss (ppo_policy_loss) and TRL's GRPO loss
// family (grpo_loss). One file per stage in this module.
import TensorCore
import KLControl
