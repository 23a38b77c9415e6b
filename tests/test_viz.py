"""Board pictures, the playable board and the search-tree views (headless: MPLBACKEND=Agg)."""

from __future__ import annotations

import os
import random

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

from dynamind_lite.envs.sokoban import SokobanEnv, load_levels, solve
from dynamind_lite.paths import level_file
from dynamind_lite.search import ExactValue, RandomPolicy, build_tree
from dynamind_lite.envs.render import COLOURS, board_image
from dynamind_lite.viz import SokobanPlayer, draw_tree, play, plot_returns, show_board, show_boards, tree_explorer

GRID = "#_O\nX√P\nS__"  # every symbol once (not a legal level: two players)
TILE = 20


def _tile(image: np.ndarray, r: int, c: int) -> np.ndarray:
    return image[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE]


def _colours(tile: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in px) for px in tile.reshape(-1, 3)}


def test_board_image_shape_and_colours_per_symbol():
    image = board_image(GRID, tile=TILE)
    assert image.shape == (3 * TILE, 3 * TILE, 3) and image.dtype == np.uint8
    centre = TILE // 2
    expected = {  # (row, col): (colour at the centre, every colour in the tile)
        (0, 0): ("wall", {"wall"}),
        (0, 1): ("floor", {"floor"}),
        (0, 2): ("floor", {"floor", "target"}),
        (1, 0): ("box", {"floor", "box"}),
        (1, 1): ("box_on_target", {"floor", "box_on_target"}),
        (1, 2): ("player", {"floor", "player"}),
        (2, 0): ("player", {"floor", "target", "player"}),
    }
    for (r, c), (middle, everything) in expected.items():
        tile = _tile(image, r, c)
        assert tuple(tile[centre, centre]) == COLOURS[middle], (r, c)
        assert _colours(tile) == {COLOURS[name] for name in everything}, (r, c)
    assert len(set(COLOURS.values())) == len(COLOURS)  # all distinct


def test_board_image_sizes_and_errors():
    assert board_image("P_XO", tile=7).shape == (7, 28, 3)
    assert board_image("P_XO\n", tile=4).shape == (4, 16, 3)
    assert board_image("########\n" * 7 + "#P_XO__#").shape == (8 * 24, 8 * 24, 3)
    with pytest.raises(ValueError, match="unknown symbol 'a' at row 0, column 1"):
        board_image("Pa")
    with pytest.raises(ValueError, match="ragged"):
        board_image("P_\n_")
    with pytest.raises(ValueError, match="non-empty"):
        board_image("")
    with pytest.raises(ValueError, match="tile"):
        board_image("P", tile=1)


def test_rgb_array_render_mode_uses_the_picture():
    env = SokobanEnv(render_mode="rgb_array")
    env.reset(options={"grid": "P_XO"})
    assert np.array_equal(env.render(), board_image("P_XO"))


def test_show_board_and_boards_draw():
    import matplotlib.pyplot as plt

    ax = show_board("P_XO", title="a level")
    assert ax.get_title() == "a level" and len(ax.images) == 1
    fig = show_boards(["P_XO", "_PXO", "__P√"], titles=["s0", "s1", "s2"])
    assert [a.get_title() for a in fig.axes] == ["s0", "s1", "s2"]
    with pytest.raises(ValueError, match="2 titles for 3 grids"):
        show_boards(["P_XO"] * 3, titles=["a", "b"])
    plt.close("all")


def _board_png(widget) -> bytes:
    (output,) = widget.outputs
    return output["data"]["image/png"]


def test_player_buttons_step_the_env():
    player = play("P__XO", max_steps=8)
    assert isinstance(player, SokobanPlayer)
    first = _board_png(player.board)
    player.buttons["Right"].click()
    assert player.env.render() == "_P_XO" and player.rewards == [-0.1]
    assert _board_png(player.board) != first
    assert "step 1/8" in player.status.value and "-0.1" in player.status.value
    player.buttons["Left"].click()
    player.buttons["Up"].click()  # off the board: a no-op step
    assert player.env.render() == "P__XO" and len(player.rewards) == 3
    for _ in range(3):
        player.buttons["Right"].click()
    assert player.env.render() == "___P√" and player.info["success"]
    assert player.episode_return == pytest.approx(10.0 - 0.1 * 5) and "solved" in player.status.value
    player.buttons["Down"].click()  # done: ignored
    assert len(player.rewards) == 6
    player.buttons["Reset"].click()
    assert player.env.render() == "P__XO" and player.rewards == [] and "step 0/8" in player.status.value
    assert _board_png(player.board) == first


def test_player_shows_running_out_of_steps():
    player = SokobanPlayer("P__XO", max_steps=2)
    player.buttons["Down"].click()
    player.buttons["Down"].click()
    assert player.env.done and "out of steps" in player.status.value
    assert player.rewards == [-0.1, 0.0]


@pytest.fixture(scope="module")
def tree():
    level = load_levels(level_file("id_test"))[3]
    env = SokobanEnv()
    env.reset(options={"grid": level["grid"]})
    return build_tree(env, env.snapshot(), RandomPolicy(), b=3, d=3, value_fn=ExactValue(), rng=random.Random(0))


def test_draw_tree_runs_on_a_real_tree(tree):
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox

    ax = draw_tree(tree)
    boxes = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    assert len(boxes) == tree.num_nodes()
    labels = [t.get_text() for t in ax.texts]
    first_actions = [child.action for child in tree.root.children]
    for action in first_actions:
        assert any(label.startswith(action + "\nr=") for label in labels)
    assert sum(label.startswith("V=") for label in labels) == sum(not r.done for r in tree.rollouts())
    ax.figure.canvas.draw()  # renders without error
    ax = draw_tree(tree, boards=False)
    ax.figure.canvas.draw()
    plt.close("all")


def test_tree_explorer_navigation(tree):
    explorer = tree_explorer(tree)
    assert explorer.node is tree.root and explorer.up_button.disabled
    labels = [b.description for b in explorer.children.children]
    assert labels == [f"{c.action} ({c.reward:+.1f})" for c in tree.root.children]
    root_png = _board_png(explorer.board)
    explorer.children.children[1].click()
    child = tree.root.children[1]
    assert explorer.node is child and f"path: {child.action}" in explorer.status.value
    assert (_board_png(explorer.board) == root_png) == (child.observation == tree.root.observation)
    while explorer.node.children:
        explorer.children.children[0].click()
    leaf = explorer.node
    assert explorer.children.children == ()
    if leaf.value is not None:
        assert "V(s) =" in explorer.status.value
    parent = explorer.path[-2]
    explorer.up_button.click()
    assert explorer.node is parent and leaf in parent.children
    explorer.root_button.click()
    assert explorer.node is tree.root and _board_png(explorer.board) == root_png
    explorer.go(tree.root.children[0].action)
    assert explorer.node is tree.root.children[0]
    with pytest.raises(ValueError, match="no child by action"):
        explorer.go("Jump")
    explorer.up()
    explorer.up()  # stays at the root
    assert explorer.node is tree.root


def test_solution_boards_draw_in_one_row():
    import matplotlib.pyplot as plt

    level = load_levels(level_file("ood_test"))[0]
    env = SokobanEnv()
    grids = [env.reset(options={"grid": level["grid"]})[0]]
    grids += [env.step(a)[0] for a in solve(level["grid"])]
    fig = show_boards(grids)
    assert len(fig.axes) == len(grids)
    plt.close(fig)


def test_plot_returns_draws_one_bar_per_set_and_policy():
    import matplotlib.pyplot as plt

    ax = plot_returns({"ID": {"random": [-2.9, 9.5, -2.9], "solver": [9.7, 9.6]}, "OOD": {"random": [-2.9],
                                                                                       "solver": [9.0]}})
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == sorted([round((-2.9 + 9.5 - 2.9) / 3, 3), 9.65, -2.9, 9.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ID", "OOD"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"random", "solver"}
    with pytest.raises(ValueError, match="at least one"):
        plot_returns({})
    plt.close("all")


def test_envs_never_import_viz():
    """The dependency runs one way, viz -> envs: the env draws its own pictures (envs.render)."""
    import re
    from pathlib import Path

    envs = Path(__file__).resolve().parent.parent / "dynamind_lite" / "envs"
    for path in envs.glob("*.py"):
        assert not re.search(r"^\s*(from|import) dynamind_lite\.viz", path.read_text(), re.MULTILINE), \
            f"{path.name} imports viz"
