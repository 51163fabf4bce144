// Exercise 14: four losses of the DPO family (sigmoid, hinge, ipo, ipo_sum). Fill
// in the body below, then run
//   make exercise N=14
// Chapters/14-dpo-family/README.md explains the rules. The harness grades the
// fixtures of these four loss types on plain log-ratios (f_divergence reverse_kl)
// and skips the others (robust, aot, discopop, ...: the library has them all).
import TensorCore
import Workshop

/// Four DPO-family losses on sequence log-probs (sums over each completion's
/// tokens), with the policy's log-ratio to the reference as the implicit reward.
///
/// ```
/// h_w = chosen - refChosen      h_l = rejected - refRejected      δ = h_w - h_l
/// x = β·δ      ε = labelSmoothing      n_w = max(chosenLengths, 1)   n_l = max(rejectedLengths, 1)
///
/// "sigmoid"  -(1-ε)·logσ(x) - ε·logσ(-x)                (cDPO; plain DPO at ε = 0)
/// "hinge"    max(0, 1 - x)
/// "ipo"      (h_w/n_w - h_l/n_l - 1/(2β))²              (TRL: length-averaged)
/// "ipo_sum"  (δ - 1/(2β))²                              (OpenRLHF: summed)
///
/// loss = mean(losses)
/// chosenRewards = β·h_w    rejectedRewards = β·h_l    rewardMargin = chosenRewards - rejectedRewards
/// rewardAccuracy = the share of pairs with chosenRewards > rejectedRewards (a tie is not a win)
/// ```
///
/// Shapes: the four log-probs [B], the two lengths [B] (token counts) -> `losses`,
/// `chosenRewards`, `rejectedRewards`, `rewardMargin` [B]. Use `logSigmoid(_:)`
/// (TensorCore) for logσ: margins of ±900 appear in the fixtures.
func dpoVariants(chosenLogps: Tensor<Double>, rejectedLogps: Tensor<Double>, refChosenLogps: Tensor<Double>,
                 refRejectedLogps: Tensor<Double>, chosenLengths: Tensor<Int64>, rejectedLengths: Tensor<Int64>,
                 lossType: String, beta: Double, labelSmoothing: Double) throws
    -> (losses: Tensor<Double>, loss: Double, chosenRewards: Tensor<Double>, rejectedRewards: Tensor<Double>,
        rewardAccuracy: Double, rewardMargin: Tensor<Double>) {
    // Your code here.
    throw ExerciseNotImplemented()
}
