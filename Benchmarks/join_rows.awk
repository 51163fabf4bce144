# Joins rlhf-bench's and torch_baseline.py's `ROW <stage> <shape> <dtype> <ms>` lines
# into one row per stage and shape:
#   gather_log_probs 4x512x50272 float32  swift 41.2 ms  torch 150.3 ms  3.65x
# (`torch -` where the torch file has no such row). A `<stage>_plain` row, the
# Swift reference path, is set against torch's `<stage>` row at the same shape.
#
#   awk -f Benchmarks/join_rows.awk TORCH_OUTPUT SWIFT_OUTPUT
FILENAME == ARGV[1] { if ($1 == "ROW") torch[$2 " " $3] = $5; next }
$1 == "ROW" {
    key = $2 " " $3
    peer = key
    sub(/_plain /, " ", peer)
    if (peer in torch)
        printf "%s %s %s  swift %.1f ms  torch %.1f ms  %.2fx\n", $2, $3, $4, $5, torch[peer], torch[peer] / $5
    else
        printf "%s %s %s  swift %.1f ms  torch -\n", $2, $3, $4, $5
}
