"""The polynomials in the fused kernels' vectorised exp (Sources/FusedKernels/VectorExponential.swift).

    e^r ≈ 1 + r + r²·P(r),   P of degree 3,   r in [-ln2/2, ln2/2]    (exponential)
    e^r ≈ 1 + r + r²·P(r),   P of degree 1,   r in [-ln2/32, ln2/32]  (exponentialBySixteenths)

and the latter's table, bits(2^(j/16)) - j·2^19 for j = 0..<16.

P is fitted for the relative error of the whole expression (minimax, by Lawson's
iteratively reweighted least squares on Chebyshev points), then rounded to
float32. Prints P's coefficients, lowest degree first, as the Swift source has
them, and the worst relative error of the fit. Needs numpy only:

    python3 Benchmarks/fit_exp_polynomial.py
"""
import numpy as np

HALF_LN2 = np.log(2) / 2
DEGREE = 3


def fit(degree, half_width):
    r = np.cos(np.linspace(0, np.pi, 4000)) * half_width
    r = r[np.abs(r) > 1e-6]          # (e^r - 1 - r) / r² is 0/0 at r = 0
    target = (np.expm1(r) - r) / r**2  # what P must be
    weight = r**2 / np.exp(r)         # an error in P, relative to e^r
    basis = np.vander(r, degree + 1, increasing=True)
    lawson = np.full(r.size, 1.0 / r.size)
    for _ in range(400):
        w = np.sqrt(lawson) * weight
        coefficients, *_ = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)
        error = np.abs((basis @ coefficients - target) * weight)
        lawson *= error
        lawson /= lawson.sum()
    return coefficients


for name, degree, half_width in [("ln2/2", DEGREE, HALF_LN2), ("ln2/32", 1, HALF_LN2 / 16)]:
    coefficients = [float(np.float32(c)) for c in fit(degree, half_width)]
    grid = np.linspace(-half_width, half_width, 200_001)
    approx = 1 + grid + grid**2 * np.polyval(coefficients[::-1], grid)
    print(f"r in [-{name}, {name}]: P, lowest degree first (float32):", ", ".join(repr(c) for c in coefficients))
    print("  worst relative error of 1 + r + r²·P(r): %.2e" % np.max(np.abs(approx / np.exp(grid) - 1)))

exact = 2.0 ** (np.arange(16) / 16)
powers = exact.astype(np.float32)
table = [(int(bits) - (j << 19)) & 0xFFFFFFFF for j, bits in enumerate(powers.view(np.uint32))]
print("table, bits(2^(j/16)) - j·2^19:", ", ".join("0x%04X_%04X" % (t >> 16, t & 0xFFFF) for t in table))
print("  worst relative error of 2^(j/16) in float32: %.2e" % np.max(np.abs(powers / exact - 1)))
