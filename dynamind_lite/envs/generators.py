"""Three structurally different Sokoban level generators, and level sets stratified by difficulty.

Introduced in ``notebooks/01_mdp_sokoban.ipynb``. One generator alone teaches a
small model the habits of that generator (its room shapes, its typical
solution length); a model that *simulates* Sokoban must play boards from any of
them. The three styles:

* ``reverse_play`` (ours, RAGEN-like; ``sokoban.generate_level``): a room carved
  by an undirected random walk of blob masks, boxes on targets, then the player
  walks backwards pulling boxes; the state whose boxes lie furthest from the
  targets is kept.
* ``random_placement``: no room shape at all. Every inside cell is a wall with
  probability ``wall_density``; targets, boxes and player are dropped on random
  floor cells. Only the exact solver decides whether the board is a level.
* ``room_carving`` (gym-sokoban's method, re-implemented from its description):
  a direction-persistent random walk stamping line/corner/block masks, then an
  *exhaustive* reverse search from (box on target, player) that keeps the state
  maximising (number of pulls) x (box-to-target distance). One box only.

Every candidate is labelled by :func:`sokoban.solution_length` (exact BFS), and
:func:`level_set` fills a set round-robin over the asked solution lengths, so a
set spreads evenly over difficulty (for example 4..12 moves) instead of piling
up where a generator happens to land.

Departures: none from the paper (it does not describe its levels); the styles
and their use (which train, which is held out) are this project's choices,
stated in ``data/sokoban/README.md``.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from dynamind_lite.envs.sokoban import (
    MOVES,
    Board,
    Level,
    render_level,
    reverse_play_candidate,
    solution_length,
    solve,
)

STYLES = ("reverse_play", "random_placement", "room_carving")
"""The generator styles, by name."""

Cell = tuple[int, int]
_DIRECTIONS = list(MOVES.values())
_GYM_MASKS = [  # gym-sokoban's stamps, offsets from the walk's position
    [(0, -1), (0, 0), (0, 1)],
    [(-1, 0), (0, 0), (1, 0)],
    [(0, -1), (0, 0), (1, 0)],
    [(0, -1), (0, 0), (1, -1), (1, 0)],
    [(0, 0), (0, 1), (1, 0)],
]


def _level(height: int, width: int, floor: set[Cell], targets: Collection[Cell], boxes: Collection[Cell],
           player: Cell) -> str:
    walls = frozenset((r, c) for r in range(height) for c in range(width) if (r, c) not in floor)
    return render_level(Level(Board(height, width, walls, frozenset(targets)), frozenset(boxes), player))


# --------------------------------------------------------------------------- #
# One candidate board per call (None: this draw gave no board)
# --------------------------------------------------------------------------- #


def random_placement_candidate(rng: random.Random, height: int, width: int, num_boxes: int,
                               wall_density: float = 0.25) -> str | None:
    """A ``random_placement`` board: inside walls at random (each with probability
    ``wall_density``), then targets, boxes and player on random floor cells."""
    inside = [(r, c) for r in range(1, height - 1) for c in range(1, width - 1)]
    floor = {cell for cell in inside if rng.random() >= wall_density}
    if len(floor) < 2 * num_boxes + 1:
        return None
    cells = rng.sample(sorted(floor), 2 * num_boxes + 1)
    return _level(height, width, floor, cells[:num_boxes], cells[num_boxes:2 * num_boxes], cells[-1])


def _gym_room(rng: random.Random, height: int, width: int, p_turn: float = 0.35) -> set[Cell]:
    """Floor cells of a direction-persistent random walk inside the border (gym-sokoban)."""
    direction = rng.choice(_DIRECTIONS)
    r, c = rng.randint(1, height - 2), rng.randint(1, width - 2)
    floor: set[Cell] = set()
    for _ in range(int(1.7 * (height + width))):
        if rng.random() < p_turn:
            direction = rng.choice(_DIRECTIONS)
        r = min(max(r + direction[0], 1), height - 2)
        c = min(max(c + direction[1], 1), width - 2)
        floor |= {(r + dr, c + dc) for dr, dc in rng.choice(_GYM_MASKS)
                  if 1 <= r + dr <= height - 2 and 1 <= c + dc <= width - 2}
    return floor


def _furthest_pull_state(floor: set[Cell], target: Cell, player: Cell, max_depth: int = 300) -> tuple[Cell, Cell, int]:
    """Exhaustive reverse play from (player, box on target): the (player, box) with the
    highest pulls x displacement over a depth-first search; score 0 = nothing pulled."""
    best, best_score = (player, target), 0
    seen: set[tuple[Cell, Cell]] = set()
    stack = [(player, target, 0, max_depth)]  # (player, box, pulls so far, depth left)
    while stack:
        at, box, pulls, depth = stack.pop()
        if depth <= 0 or (at, box) in seen:
            continue
        seen.add((at, box))
        score = pulls * (abs(box[0] - target[0]) + abs(box[1] - target[1]))
        if score > best_score:
            best, best_score = (at, box), score
        for dr, dc in _DIRECTIONS:
            ahead = (at[0] + dr, at[1] + dc)
            if ahead not in floor or ahead == box:
                continue
            stack.append((ahead, box, pulls, depth - 1))  # plain move
            if (at[0] - dr, at[1] - dc) == box:  # pull the box behind the player
                stack.append((ahead, at, pulls + 1, depth - 1))
    return best[0], best[1], best_score


def room_carving_candidate(rng: random.Random, height: int, width: int, num_boxes: int = 1) -> str | None:
    """A ``room_carving`` board (gym-sokoban style, one box)."""
    if num_boxes != 1:
        raise ValueError(f"the room_carving style makes one-box levels only, got num_boxes={num_boxes}")
    floor = _gym_room(rng, height, width)
    if len(floor) < 3:
        return None
    cells = sorted(floor)
    player = rng.choice(cells)
    target = rng.choice([cell for cell in cells if cell != player])
    player, box, score = _furthest_pull_state(floor, target, player)
    return _level(height, width, floor, [target], [box], player) if score > 0 else None


_CANDIDATES = {"reverse_play": reverse_play_candidate, "random_placement": random_placement_candidate,
               "room_carving": room_carving_candidate}


# --------------------------------------------------------------------------- #
# Levels and level sets
# --------------------------------------------------------------------------- #


def _check(style: str, size: tuple[int, int], num_boxes: int) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown level style {style!r}; choose one of {STYLES}")
    if min(size) < 3:
        raise ValueError(f"level size must be at least 3x3, got {size[0]}x{size[1]}")
    if num_boxes < 1:
        raise ValueError(f"num_boxes must be at least 1, got {num_boxes}")


def generate_styled_level(style: str, seed: int, size: tuple[int, int] = (6, 6), num_boxes: int = 1,
                          moves: Collection[int] = range(3, 16), max_tries: int = 20_000) -> str:
    """A level of ``style`` whose optimal solution length is in ``moves``; the same
    for the same arguments (``notebooks/01_mdp_sokoban.ipynb``).

    Raises RuntimeError when ``max_tries`` candidates give none (e.g. 20 moves on 6x6)."""
    _check(style, size, num_boxes)
    rng, make, wanted = random.Random(seed), _CANDIDATES[style], set(moves)
    for _ in range(max_tries):
        grid = make(rng, size[0], size[1], num_boxes)
        if grid is not None and solution_length(grid) in wanted:
            return grid
    raise RuntimeError(f"no {style} level of {size[0]}x{size[1]} with {num_boxes} boxes and a solution length in "
                       f"{sorted(wanted)} in {max_tries} tries (seed {seed})")


def level_set(style: str, count: int, *, size: tuple[int, int] = (6, 6), num_boxes: int = 1,
              lengths: Sequence[int] = range(4, 13), first_seed: int = 0, exclude: Collection[str] = (),
              prefix: str = "level", patience: int = 100_000) -> list[dict]:
    """``count`` distinct levels of one style, spread round-robin over ``lengths``
    (level i needs exactly ``lengths[i % len(lengths)]`` optimal moves).

    Candidates are drawn from one rng seeded with ``first_seed``; a candidate of a
    length that is still wanted is kept, unless its grid is in ``exclude`` or
    already taken, so the set is the same for the same arguments. Each level is a
    dict in the format of ``data/sokoban/`` (``id``, ``grid``, ``solution``,
    ``size``, ``num_boxes``, ``style``, ``seed``); ``seed`` is ``first_seed``.
    RuntimeError names the lengths still missing when ``patience`` candidates in
    a row add no level (a length the style cannot make at this size).
    """
    _check(style, size, num_boxes)
    lengths = list(lengths)
    if count < 1 or not lengths:
        raise ValueError(f"need count >= 1 and at least one length, got count={count}, lengths={lengths}")
    quota = {length: 0 for length in lengths}
    for i in range(count):
        quota[lengths[i % len(lengths)]] += 1
    rng, make, taken = random.Random(first_seed), _CANDIDATES[style], set(exclude)
    found: dict[int, list[str]] = {length: [] for length in lengths}
    idle = 0  # candidates since the last kept level
    while any(len(found[n]) < quota[n] for n in lengths):
        idle += 1
        if idle > patience:
            short = {n: quota[n] - len(found[n]) for n in lengths if len(found[n]) < quota[n]}
            raise RuntimeError(f"{style} {size[0]}x{size[1]} with {num_boxes} boxes: no new level in {patience} "
                               f"candidates; still missing (length: count) {short}")
        grid = make(rng, size[0], size[1], num_boxes)
        if grid is None or grid in taken:
            continue
        length = solution_length(grid)
        if length in found and len(found[length]) < quota[length]:
            found[length].append(grid)
            taken.add(grid)
            idle = 0
    grids = [found[lengths[i % len(lengths)]][i // len(lengths)] for i in range(count)]
    return [{"id": f"{prefix}_{i:04d}", "grid": grid, "solution": solve(grid), "size": list(size),
             "num_boxes": num_boxes, "style": style, "seed": first_seed} for i, grid in enumerate(grids)]
