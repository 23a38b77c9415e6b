"""Shared statistics for the results tables.

Introduced in ``notebooks/03_resim_aggregation.ipynb`` (RESIM's success rate
with its 95% interval); the evaluation harness (``dynamind_lite.evaluate``)
reports every success rate of ``notebooks/04_resim_sft.ipynb`` the same way.

Departure from the paper: the paper reports means of 3 runs without intervals.
Our test splits are small (tens to hundreds of levels), so every success rate
comes with a Wilson score interval, which stays inside [0, 1] and is honest at
0% and 100% (where the normal-approximation interval collapses to a point).
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054
"""The 97.5% quantile of the standard normal: two-sided 95% coverage."""


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a success probability.

    Args:
        successes: k, number of successes, 0 <= k <= n.
        n: number of trials (episodes), >= 0.

    Returns:
        ``(low, high)`` with 0 <= low <= k/n <= high <= 1; ``(0.0, 1.0)`` when
        n == 0 (no evidence). E.g. 95 of 100 -> about (0.888, 0.978).

    The interval is every p whose score test |p_hat - p| <= z sqrt(p (1 - p) / n)
    does not reject; solving that quadratic in p gives::

        centre = (p_hat + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p_hat (1 - p_hat) / n + z^2 / 4n^2)
    """
    if isinstance(successes, bool) or isinstance(n, bool) or not isinstance(successes, int) \
            or not isinstance(n, int):
        raise ValueError(f"successes and n must be integers, got successes={successes!r}, n={n!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    if n == 0:
        return 0.0, 1.0
    p_hat = successes / n
    z2 = Z_95 * Z_95
    denominator = 1.0 + z2 / n
    centre = (p_hat + z2 / (2 * n)) / denominator  # (p_hat + z^2/2n) / (1 + z^2/n)
    half = Z_95 / denominator * math.sqrt(p_hat * (1 - p_hat) / n + z2 / (4 * n * n))
    # The exact interval touches 0 (k = 0) and 1 (k = n); clamp float error there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
