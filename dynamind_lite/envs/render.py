"""A Sokoban board as an RGB picture: the env's ``rgb_array`` render mode.

Introduced in ``notebooks/01_mdp_sokoban.ipynb``. It lives beside the env so
that ``envs.sokoban`` needs nothing from ``dynamind_lite.viz`` (which draws
figures and widgets on top of it and imports the env): the dependency runs one
way, viz -> envs. Pictures only: no departure from the paper.
"""

from __future__ import annotations

import numpy as np

from dynamind_lite.response import GRID_SYMBOLS

COLOURS: dict[str, tuple[int, int, int]] = {
    "wall": (70, 70, 80),
    "floor": (238, 232, 213),
    "target": (220, 50, 47),
    "box": (196, 134, 56),
    "box_on_target": (60, 160, 75),
    "player": (38, 110, 210),
}
"""RGB of each element of a board picture (``notebooks/01_mdp_sokoban.ipynb``)."""

_LAYERS: dict[str, tuple[str, ...]] = {
    # symbol: (background, shapes drawn on top, in order)
    "#": ("wall",),
    "_": ("floor",),
    "O": ("floor", "ring"),
    "X": ("floor", "box"),
    "√": ("floor", "box_on_target"),
    "P": ("floor", "player"),
    "S": ("floor", "ring", "player"),
}


def _tile_masks(tile: int) -> dict[str, np.ndarray]:
    """Boolean (tile, tile) masks: a ring (target), a disc (player), an inset square (box)."""
    centre = (tile - 1) / 2
    yy, xx = np.mgrid[0:tile, 0:tile]
    radius = np.hypot(yy - centre, xx - centre)
    inset = max(1, round(tile * 0.12))
    square = np.zeros((tile, tile), dtype=bool)
    square[inset:tile - inset, inset:tile - inset] = True
    return {
        "ring": (radius <= tile * 0.45) & (radius >= tile * 0.45 - max(1.0, tile * 0.1)),
        "player": radius <= tile * 0.28,
        "box": square,
        "box_on_target": square,
    }


def _tiles(tile: int) -> np.ndarray:
    """(len(GRID_SYMBOLS), tile, tile, 3) uint8: the picture of each symbol."""
    masks = _tile_masks(tile)
    tiles = np.zeros((len(GRID_SYMBOLS), tile, tile, 3), dtype=np.uint8)
    for index, symbol in enumerate(GRID_SYMBOLS):
        background, *shapes = _LAYERS[symbol]
        tiles[index] = COLOURS[background]
        for shape in shapes:
            tiles[index][masks[shape]] = COLOURS["target" if shape == "ring" else shape]
    return tiles


def board_image(grid: str, tile: int = 24) -> np.ndarray:
    """The board ``grid`` (text, one row per line) as an RGB picture
    (``notebooks/01_mdp_sokoban.ipynb``).

    Returns a uint8 array of shape (H * tile, W * tile, 3) for an H x W board:
    walls dark grey, floor cream, targets a red ring, boxes brown squares, boxes
    on targets green squares, the player a blue disc (inside a red ring when it
    stands on a target); see ``COLOURS``. Any rectangular grid of Sokoban
    symbols is drawn, even one that is not a legal level (a model's imagined
    state); raises ``ValueError`` for other symbols or ragged rows.
    """
    if not isinstance(tile, int) or tile < 2:
        raise ValueError(f"tile must be an integer >= 2 pixels, got {tile!r}")
    if not isinstance(grid, str) or not grid.strip("\n"):
        raise ValueError("board_image needs a non-empty grid text")
    rows = grid.strip("\n").split("\n")
    width = len(rows[0])
    index = np.zeros((len(rows), width), dtype=np.intp)
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"ragged grid: row {r} has {len(row)} cells, row 0 has {width}")
        for c, symbol in enumerate(row):
            position = GRID_SYMBOLS.find(symbol)
            if position < 0:
                raise ValueError(f"unknown symbol {symbol!r} at row {r}, column {c}; allowed: {' '.join(GRID_SYMBOLS)}")
            index[r, c] = position
    picture = _tiles(tile)[index]  # (H, W, tile, tile, 3)
    return picture.transpose(0, 2, 1, 3, 4).reshape(len(rows) * tile, width * tile, 3)
