// PreferenceLosses: the DPO family (dpo_variants), CPO/SimPO/AlphaPO (cpo_loss),
// ORPO (orpo_loss) and KTO (kto_loss). One file per stage in this module.
import TensorCore
