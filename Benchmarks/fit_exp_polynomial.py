"""The polynomial in the fused kernels' vectorised exp (Sources/FusedKernels/VectorExponential.swift).

    e^r ≈ 1 + r + r²·P(r),   P of degree 3,   r in [-ln2/2, ln2/2]

P is fitted for the relative error of the whole expression (minimax, by Lawson's
iteratively reweighted least squares on Chebyshev points), then rounded to
float32. Prints P's coefficients, lowest degree first, as the Swift source has
them, and the worst relative error of the fit. Needs numpy only:

    python3 Benchmarks/fit_exp_polynomial.py
"""
import numpy as np

HALF_LN2 = np.log(2) / 2
DEGREE = 3


def fit(degree):
    r = np.cos(np.linspace(0, np.pi, 4000)) * HALF_LN2
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


coefficients = [float(np.float32(c)) for c in fit(DEGREE)]
grid = np.linspace(-HALF_LN2, HALF_LN2, 200_001)
approx = 1 + grid + grid**2 * np.polyval(coefficients[::-1], grid)
print("P, lowest degree first (float32):", ", ".join(repr(c) for c in coefficients))
print("worst relative error of 1 + r + r²·P(r) on [-ln2/2, ln2/2]: %.2e" % np.max(np.abs(approx / np.exp(grid) - 1)))
