"""Shared statistics for the results tables.

Introduced in ``notebooks/03_resim_aggregation.ipynb`` (RESIM's success rate
with its 95% interval); the evaluation harness (``dynamind_lite.evaluate``)
reports every success rate of ``notebooks/04_resim_sft.ipynb`` the same way,
and ``notebooks/07_results.ipynb`` summarises seeds with ``seed_mean_ci95``
and ties Sim Score to success with ``pearson_r``.

Departure from the paper: the paper reports means of 3 runs without intervals.
Our test splits are small (tens to hundreds of levels), so every success rate
comes with a Wilson score interval, which stays inside [0, 1] and is honest at
0% and 100% (where the normal-approximation interval collapses to a point).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from dynamind_lite.envs.sokoban import solution_length

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


T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
"""Student's t quantile t_{0.975, df} for df = 1..10 (two-sided 95%); beyond, ``Z_95``
understates the interval by < 7% (df = 11: 2.201) and 2% at df = 30."""


def seed_mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean over seeds with its 95% t-interval: ``(mean, low, high)``.

    mean = sum x_i / n;  half = t_{0.975, n-1} * s / sqrt(n), s the sample std
    (n - 1 in the denominator). One seed gives ``(x, x, x)`` (no spread known);
    three seeds use t = 4.303, so a spread of a few points is a wide interval.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to average")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = T_975[n - 2] if n - 1 <= len(T_975) else Z_95
    half = t * std / math.sqrt(n)
    return mean, mean - half, mean + half


def pearson_r(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation r = cov(x, y) / (std x * std y) in [-1, 1]; ``None`` when
    fewer than 2 pairs or either side is constant (r undefined). The paper reads
    Sim Score against success this way (r about 0.7-0.96)."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} vs {len(ys)})")
    n = len(xs)
    if n < 2:
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    if var_x == 0 or var_y == 0:
        return None
    return max(-1.0, min(1.0, cov / math.sqrt(var_x * var_y)))


def successes_by_optimal_length(episodes: Iterable[Any]) -> dict[str, list[int]]:
    """``{optimal moves: [solved, played]}`` over episodes (anything with ``.success`` and
    ``.grid``, the Sokoban start state, or ``.optimal_length`` where the world knows it
    otherwise: ALFWorld's planner); keys are strings sorted by length, for JSON, and
    starts without a known solution go under ``"none"``. Success per difficulty slice:
    notebook 07 plots it, as the paper's harder levels are the longer ones."""
    counts: dict[int | None, list[int]] = {}
    for episode in episodes:
        length = getattr(episode, "optimal_length", None)
        if length is None and episode.grid:
            length = solution_length(episode.grid)
        slot = counts.setdefault(length, [0, 0])
        slot[0] += int(episode.success)
        slot[1] += 1
    return {("none" if length is None else str(length)): counts[length]
            for length in sorted(counts, key=lambda n: (n is None, n or 0))}
