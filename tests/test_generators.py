"""Level generators of three styles and the shipped training mix: seeded, solvable,
spread over solution lengths, and never holding an OOD board, a held-out style or
a test level."""

from __future__ import annotations

from collections import Counter

import pytest

from dynamind_lite.envs.generators import STYLES, generate_styled_level, level_set
from dynamind_lite.envs.sokoban import is_solved, load_levels, parse_level, simulate_actions, solve
from dynamind_lite.paths import level_file

TEST_SPLITS = ("id_test", "ood_test", "style_test_room_carving", "style_test_random_placement")


@pytest.mark.parametrize("style", STYLES)
def test_each_style_is_seeded_and_solvable_in_the_asked_lengths(style):
    grid = generate_styled_level(style, seed=3, moves=range(4, 9))
    assert grid == generate_styled_level(style, seed=3, moves=range(4, 9))
    parsed = parse_level(grid)
    assert (parsed.board.height, parsed.board.width) == (6, 6) and len(parsed.boxes) == 1
    plan = solve(grid)
    assert 4 <= len(plan) <= 8 and is_solved(simulate_actions(grid, plan)[-1])


def test_level_set_spreads_evenly_over_lengths_and_skips_excluded_grids():
    first = level_set("random_placement", 12, lengths=range(4, 8), first_seed=5)
    assert first == level_set("random_placement", 12, lengths=range(4, 8), first_seed=5)
    assert Counter(len(level["solution"]) for level in first) == {4: 3, 5: 3, 6: 3, 7: 3}
    assert [len(level["solution"]) for level in first[:4]] == [4, 5, 6, 7]  # round robin
    again = level_set("random_placement", 12, lengths=range(4, 8), first_seed=5,
                      exclude={level["grid"] for level in first})
    assert not {level["grid"] for level in again} & {level["grid"] for level in first}


def test_bad_requests_name_the_problem():
    with pytest.raises(ValueError, match="unknown level style"):
        level_set("maze", 3)
    with pytest.raises(ValueError, match="one-box"):
        generate_styled_level("room_carving", 0, num_boxes=2)
    with pytest.raises(RuntimeError, match="still missing"):
        level_set("reverse_play", 2, size=(4, 4), lengths=[30], patience=2000)


def test_training_mix_holds_no_ood_board_no_held_out_style_and_no_test_level():
    train = load_levels(level_file("mix_train")) + load_levels(level_file("mix_val"))
    tests = {level["grid"] for split in TEST_SPLITS for level in load_levels(level_file(split))}
    assert not {level["grid"] for level in train} & tests
    assert {level["style"] for level in train} == {"reverse_play", "room_carving"}
    assert not [level for level in train if tuple(level["size"]) == (8, 8) and level["num_boxes"] == 2]
    lengths = Counter(len(level["solution"]) for level in train)
    assert min(lengths) == 4 and max(lengths) == 12 and all(lengths[n] >= 40 for n in range(4, 13))


def test_held_out_style_test_set_spreads_over_4_to_12_moves():
    levels = load_levels(level_file("style_test_random_placement"))
    assert Counter(len(level["solution"]) for level in levels) == {n: 20 for n in range(4, 13)}
    assert {level["style"] for level in levels} == {"random_placement"}


def test_the_canvas_keeps_the_dynamics_and_gives_every_board_one_layout():
    from dynamind_lite.envs.sokoban import place_on_canvas, solution_length, step_grid

    for level in load_levels(level_file("id_test"))[:20] + load_levels(level_file("mix_train"))[::80]:
        grid = level["grid"]
        padded = place_on_canvas(grid, 8)
        rows = padded.split("\n")
        assert len(rows) == 8 and {len(row) for row in rows} == {8}
        assert solution_length(padded) == len(level["solution"])
        for action in ("Up", "Down", "Left", "Right"):
            assert step_grid(padded, action) == place_on_canvas(step_grid(grid, action), 8)
    assert place_on_canvas("#P√#", 0) == "#P√#"
    with pytest.raises(ValueError, match="does not fit"):
        place_on_canvas("\n".join(["#" * 9] * 9), 8)
    canvas_levels = load_levels(level_file("id_test"), canvas=8)
    assert canvas_levels[0]["grid"] == place_on_canvas(load_levels(level_file("id_test"))[0]["grid"], 8)
