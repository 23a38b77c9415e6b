"""Statistics of the results tables, each checked against a naive reference."""

import math
import random
import statistics
from dataclasses import dataclass

import pytest

from dynamind_lite.metrics import T_975, pearson_r, seed_mean_ci95, successes_by_optimal_length


def test_seed_mean_ci95_matches_the_t_interval_by_hand():
    values = [0.69, 0.74, 0.63]
    mean, low, high = seed_mean_ci95(values)
    half = 4.303 * statistics.stdev(values) / math.sqrt(3)  # t_{0.975, 2} = 4.303
    assert mean == pytest.approx(statistics.mean(values))
    assert (low, high) == pytest.approx((mean - half, mean + half))


def test_seed_mean_ci95_one_seed_and_many_seeds():
    assert seed_mean_ci95([0.5]) == (0.5, 0.5, 0.5)
    values = [random.Random(i).random() for i in range(40)]  # df = 39 > the table: the normal quantile
    mean, low, high = seed_mean_ci95(values)
    assert high - mean == pytest.approx(1.959964 * statistics.stdev(values) / math.sqrt(40), rel=1e-5)
    assert len(T_975) == 10 and T_975[0] == pytest.approx(12.706)
    with pytest.raises(ValueError, match="no values"):
        seed_mean_ci95([])


def test_pearson_r_matches_the_standard_library():
    rng = random.Random(0)
    xs = [rng.random() for _ in range(30)]
    ys = [x + 0.3 * rng.random() for x in xs]
    assert pearson_r(xs, ys) == pytest.approx(statistics.correlation(xs, ys))
    assert pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson_r([1, 2, 3], [5, 5, 5]) is None  # constant side: r undefined
    assert pearson_r([1], [2]) is None
    with pytest.raises(ValueError, match="differ in length"):
        pearson_r([1, 2], [1])


@dataclass
class _Episode:
    grid: str
    success: bool


def test_successes_by_optimal_length_counts_per_slice():
    one_move = "#####\n#PXO#\n#####"      # push right once
    two_moves = "######\n#PX_O#\n######"  # push right twice
    stuck = "#####\n#XPO#\n#####"         # box against the wall: unsolvable
    episodes = [_Episode(one_move, True), _Episode(two_moves, False), _Episode(two_moves, True),
                _Episode(stuck, False)]
    assert successes_by_optimal_length(episodes) == {"1": [1, 1], "2": [1, 2], "none": [0, 1]}
    assert list(successes_by_optimal_length(episodes)) == ["1", "2", "none"]
