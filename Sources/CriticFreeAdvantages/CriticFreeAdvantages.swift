// CriticFreeAdvantages: GRPO's and RLOO's group advantages (group_advantages) and
// OpenRLHF's per-token advantages (token_advantages). One file per stage here.
import TensorCore
