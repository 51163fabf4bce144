// KLControl: the KL estimators k1, k2, k3 (kl_estimators) and the adaptive KL
// controller (adaptive_kl_controller). One file per stage in this module.
import TensorCore
