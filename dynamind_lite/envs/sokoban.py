"""Text Sokoban, the paper's MDP (S, A, T, R). Introduced in ``notebooks/01_mdp_sokoban.ipynb``.

* **S** a board as text, one row per line, in the symbols RAGEN and verl-agent use::

      #  wall        _  floor      O  target
      X  box         √  box on target
      P  player      S  player on target

* **A** ``Up``, ``Down``, ``Left``, ``Right``, given as text (case-insensitive,
  surrounding whitespace ignored). Anything else is an *invalid action*: no move,
  the step still costs -0.1 and is counted in ``info["num_invalid_actions"]``.
* **T** deterministic: the player moves one cell; a box in the way is pushed if the
  cell behind it is free. A move into a wall or an unpushable box is a legal no-op.
* **R** exactly as the paper: ``STEP_REWARD = -0.1`` for a non-terminal step,
  ``SUCCESS_REWARD = +10.0`` on the step that puts the last box on a target
  (``terminated``; this wins over the budget running out on the same step), and
  ``FAILURE_REWARD = 0.0`` on the step that spends the budget unsolved (``truncated``).

Besides the gymnasium env, the module holds the pure functions every later stage
uses on board text: :func:`step_grid`, :func:`simulate_actions`, :func:`solve`
(exact BFS, fewest moves), :func:`solution_length` (cached; the exact value
function of ``dynamind_lite.search``), :func:`generate_level` (reverse playing, as
gym-sokoban and RAGEN do) and :func:`load_levels`.

Departures: levels need not be walled in (off-board counts as wall); a level may
have fewer boxes than targets (solved when every box sits on a target). A board
that starts solved is played as given: its first step ends the episode with +10
(no shipped or generated level starts solved).
"""

from __future__ import annotations

import functools
import json
import random
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium as gym
from gymnasium import spaces

from dynamind_lite.envs.render import board_image
from dynamind_lite.response import ACTIONS, GRID_SYMBOLS, canonical_action

STEP_REWARD = -0.1
"""R for a non-terminal step (also for a no-op or an invalid action)."""
SUCCESS_REWARD = 10.0
"""R on the step that solves the level."""
FAILURE_REWARD = 0.0
"""R on the step that spends the step budget without solving the level."""

MOVES: dict[str, tuple[int, int]] = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}
"""(row, column) offset of each action."""

WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = GRID_SYMBOLS
Cell = tuple[int, int]


# ----------------------------------------------------------------------------------------------
# Board text <-> state
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Board:
    """The static part of a level: its shape, walls and targets (never change in play)."""

    height: int
    width: int
    walls: frozenset[Cell]
    targets: frozenset[Cell]

    def blocked(self, cell: Cell) -> bool:
        """True for a wall or a cell off the board."""
        r, c = cell
        return not (0 <= r < self.height and 0 <= c < self.width) or cell in self.walls


@dataclass(frozen=True)
class Level:
    """A parsed board: the static :class:`Board` plus the dynamic boxes and player."""

    board: Board
    boxes: frozenset[Cell]
    player: Cell


def parse_level(text: str) -> Level:
    """Parse board text (one row per line) into a :class:`Level`.

    Raises ``ValueError`` naming the problem: empty text, ragged rows, an unknown
    symbol (with its row and column), no player, several players, no box, more
    boxes than targets.
    """
    if not isinstance(text, str):
        raise ValueError(f"a Sokoban grid must be text, got {type(text).__name__}")
    rows = text.strip("\n").split("\n")
    if not text.strip():
        raise ValueError("empty Sokoban grid")
    width = len(rows[0])
    walls, targets, boxes, players = set(), set(), set(), []
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"ragged Sokoban grid: row {r} has {len(row)} cells, row 0 has {width}")
        for c, symbol in enumerate(row):
            if symbol not in GRID_SYMBOLS:
                raise ValueError(
                    f"unknown symbol {symbol!r} at row {r}, column {c}; allowed symbols: {' '.join(GRID_SYMBOLS)}"
                )
            if symbol == WALL:
                walls.add((r, c))
            if symbol in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET):
                targets.add((r, c))
            if symbol in (BOX, BOX_ON_TARGET):
                boxes.add((r, c))
            if symbol in (PLAYER, PLAYER_ON_TARGET):
                players.append((r, c))
    if not players:
        raise ValueError("Sokoban grid has no player (P or S)")
    if len(players) > 1:
        raise ValueError(f"Sokoban grid has {len(players)} players (P or S) at {players}; exactly one is allowed")
    if not boxes:
        raise ValueError("Sokoban grid has no box (X or √)")
    if len(boxes) > len(targets):
        raise ValueError(f"Sokoban grid has more boxes ({len(boxes)}) than targets ({len(targets)})")
    board = Board(len(rows), width, frozenset(walls), frozenset(targets))
    return Level(board, frozenset(boxes), players[0])


def render_level(level: Level) -> str:
    """Board text of ``level``: the inverse of :func:`parse_level`."""
    board = level.board
    lines = []
    for r in range(board.height):
        line = []
        for c in range(board.width):
            cell = (r, c)
            on_target = cell in board.targets
            if cell in board.walls:
                line.append(WALL)
            elif cell == level.player:
                line.append(PLAYER_ON_TARGET if on_target else PLAYER)
            elif cell in level.boxes:
                line.append(BOX_ON_TARGET if on_target else BOX)
            else:
                line.append(TARGET if on_target else FLOOR)
        lines.append("".join(line))
    return "\n".join(lines)


def move(level: Level, action: str) -> tuple[Level, bool, bool]:
    """T(s, a) on a parsed level for a canonical ``action``.

    Returns ``(next_level, moved, pushed)``; a blocked move returns ``level`` itself.
    """
    dr, dc = MOVES[action]
    r, c = level.player
    ahead = (r + dr, c + dc)
    if level.board.blocked(ahead):
        return level, False, False
    if ahead in level.boxes:
        beyond = (r + 2 * dr, c + 2 * dc)
        if level.board.blocked(beyond) or beyond in level.boxes:
            return level, False, False
        return replace(level, boxes=(level.boxes - {ahead}) | {beyond}, player=ahead), True, True
    return replace(level, player=ahead), True, False


def level_solved(level: Level) -> bool:
    """Every box on a target."""
    return level.boxes <= level.board.targets


def _action_or_error(action: str) -> str:
    name = canonical_action(action)
    if name is None:
        raise ValueError(f"unknown Sokoban action {action!r}; expected one of {', '.join(ACTIONS)}")
    return name


def step_grid(grid: str, action: str) -> str:
    """The board text after ``action`` (T as a pure function on text). Raises
    ``ValueError`` for a bad grid or an action outside A."""
    return render_level(move(parse_level(grid), _action_or_error(action))[0])


def simulate_actions(grid: str, actions: list[str]) -> list[str]:
    """The real states s_1 .. s_k reached from ``grid`` by the action prefix, one per action."""
    level = parse_level(grid)
    states = []
    for action in actions:
        level = move(level, _action_or_error(action))[0]
        states.append(render_level(level))
    return states


def is_solved(grid: str) -> bool:
    """True when every box of ``grid`` is on a target."""
    return level_solved(parse_level(grid))


# ----------------------------------------------------------------------------------------------
# Exact solver: breadth-first search over (player, boxes), fewest moves
# ----------------------------------------------------------------------------------------------


def _solve_level(level: Level, max_states: int) -> list[str] | None:
    board = level.board
    start = (level.player, level.boxes)
    if level.boxes <= board.targets:
        return []
    parents: dict = {start: None}
    frontier = deque([start])
    while frontier:
        state = frontier.popleft()
        player, boxes = state
        for action, (dr, dc) in MOVES.items():
            ahead = (player[0] + dr, player[1] + dc)
            if board.blocked(ahead):
                continue
            if ahead in boxes:
                beyond = (ahead[0] + dr, ahead[1] + dc)
                if board.blocked(beyond) or beyond in boxes:
                    continue
                next_state = (ahead, (boxes - {ahead}) | {beyond})
            else:
                next_state = (ahead, boxes)
            if next_state in parents:
                continue
            parents[next_state] = (state, action)
            if next_state[1] <= board.targets:
                plan = []
                while parents[next_state] is not None:
                    next_state, step_action = parents[next_state]
                    plan.append(step_action)
                return plan[::-1]
            if len(parents) > max_states:
                raise RuntimeError(f"solver gave up after {max_states} states; the level is too large")
            frontier.append(next_state)
    return None


def solve(grid: str, max_states: int = 2_000_000) -> list[str] | None:
    """An optimal (fewest moves) solution of ``grid``, ``[]`` if already solved,
    ``None`` if unsolvable. Exact breadth-first search over (player, boxes); on the
    shipped test levels it takes well under a millisecond per level (median; see
    ``benchmarks/bench_env.py``)."""
    plan = _cached_solve(grid, max_states)
    return None if plan is None else list(plan)


@functools.lru_cache(maxsize=200_000)
def _cached_solve(grid: str, max_states: int) -> tuple[str, ...] | None:
    plan = _solve_level(parse_level(grid), max_states)
    return None if plan is None else tuple(plan)


def solution_length(grid: str) -> int | None:
    """Fewest moves to solve ``grid`` (0 if solved, ``None`` if unsolvable); cached."""
    plan = _cached_solve(grid, 2_000_000)
    return None if plan is None else len(plan)


# ----------------------------------------------------------------------------------------------
# Level generation by reverse playing (gym-sokoban, RAGEN)
# ----------------------------------------------------------------------------------------------


def _carve_room(rng: random.Random, height: int, width: int) -> set[Cell]:
    """Floor cells carved by a random walk inside the border (gym-sokoban's room topology)."""
    floor: set[Cell] = set()
    r, c = rng.randint(1, height - 2), rng.randint(1, width - 2)
    masks = [[(0, 0)], [(0, 0), (0, 1)], [(0, 0), (1, 0)], [(0, 0), (0, 1), (1, 0), (1, 1)],
             [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]]
    for _ in range(int(1.5 * (height + width))):
        for dr, dc in rng.choice(masks):
            cell = (r + dr, c + dc)
            if 1 <= cell[0] <= height - 2 and 1 <= cell[1] <= width - 2:
                floor.add(cell)
        dr, dc = rng.choice(list(MOVES.values()))
        r = min(max(r + dr, 1), height - 2)
        c = min(max(c + dc, 1), width - 2)
    return floor


def _reverse_play(rng: random.Random, level: Level, num_moves: int) -> Level:
    """Walk the player backwards from the solved ``level``, pulling boxes; keep the
    state whose boxes have travelled furthest from the targets."""
    best, best_score = level, 0
    for _ in range(num_moves):
        dr, dc = rng.choice(list(MOVES.values()))
        r, c = level.player
        ahead = (r + dr, c + dc)
        if level.board.blocked(ahead) or ahead in level.boxes:
            continue
        behind = (r - dr, c - dc)
        boxes = level.boxes
        if behind in boxes and rng.random() < 0.7:
            boxes = (boxes - {behind}) | {(r, c)}
        level = Level(level.board, boxes, ahead)
        score = sum(min(abs(b[0] - t[0]) + abs(b[1] - t[1]) for t in level.board.targets) for b in boxes)
        if score > best_score:
            best, best_score = level, score
    return best


def reverse_play_candidate(rng: random.Random, height: int, width: int, num_boxes: int,
                           reverse_steps: int = 100) -> str | None:
    """One reverse-play board drawn from ``rng`` (None when the carved room is too
    small): carve a room, put the boxes on targets and the player on a free cell,
    walk the player backwards pulling boxes. Not checked by the solver."""
    floor = _carve_room(rng, height, width)
    if len(floor) < num_boxes * 2 + 2:
        return None
    walls = frozenset((r, c) for r in range(height) for c in range(width) if (r, c) not in floor)
    chosen = rng.sample(sorted(floor), num_boxes + 1)
    targets = frozenset(chosen[:num_boxes])
    start = Level(Board(height, width, walls, targets), targets, chosen[-1])
    return render_level(_reverse_play(rng, start, reverse_steps))


def generate_level(
    seed: int,
    size: tuple[int, int] | int = (6, 6),
    num_boxes: int = 1,
    min_moves: int = 3,
    max_moves: int | None = 15,
    reverse_steps: int = 100,
    max_tries: int = 10_000,
) -> str:
    """A solvable level as board text, the same for the same arguments.

    Reverse playing (gym-sokoban, RAGEN): carve a walled room by a random walk,
    put ``num_boxes`` boxes on targets and the player on a free cell, then walk the
    player backwards pulling boxes. A candidate is kept only if :func:`solve` finds
    a solution of ``min_moves`` to ``max_moves`` moves (``None``: no upper bound).
    """
    height, width = (size, size) if isinstance(size, int) else size
    if height < 3 or width < 3:
        raise ValueError(f"level size must be at least 3x3, got {height}x{width}")
    if num_boxes < 1:
        raise ValueError(f"num_boxes must be at least 1, got {num_boxes}")
    if min_moves < 1 or (max_moves is not None and max_moves < min_moves):
        raise ValueError(f"need 1 <= min_moves <= max_moves, got min_moves={min_moves}, max_moves={max_moves}")
    rng = random.Random(seed)
    for _ in range(max_tries):
        grid = reverse_play_candidate(rng, height, width, num_boxes, reverse_steps)
        if grid is None:
            continue
        moves = solution_length(grid)
        if moves is not None and moves >= min_moves and (max_moves is None or moves <= max_moves):
            return grid
    raise RuntimeError(f"no level of {height}x{width} with {num_boxes} boxes and {min_moves}..{max_moves} "
                       f"moves found in {max_tries} tries (seed {seed})")


def place_on_canvas(grid: str, canvas: int) -> str:
    """``grid`` on a fixed ``canvas`` x ``canvas`` board: walls added on the right
    and at the bottom (``notebooks/01_mdp_sokoban.ipynb``).

    The dynamics do not change (off-board already counts as wall), but every
    board, 6x6 or 8x8, is then written in one layout: the same number of rows
    and cells per row, each cell at the same place in the text. A small model
    copies and edits a grid by position, so one layout lets what it learns on
    one board size carry over to another. ``canvas=0`` returns ``grid`` as is.
    Raises ``ValueError`` when the board is larger than the canvas.
    """
    if not canvas:
        return grid
    rows = grid.split("\n")
    if len(rows) > canvas or max(map(len, rows)) > canvas:
        raise ValueError(f"a {len(rows)}x{max(map(len, rows))} board does not fit a {canvas}x{canvas} canvas")
    rows = [row + WALL * (canvas - len(row)) for row in rows]
    return "\n".join(rows + [WALL * canvas] * (canvas - len(rows)))


def load_levels(path: str | Path, canvas: int = 0) -> list[dict]:
    """Read a level file of ``data/sokoban/`` (JSONL; each line has ``id``, ``grid``,
    ``solution``, ...). Every grid is validated; a bad line raises ``ValueError``
    naming the file and line. ``canvas`` > 0 places every grid on that fixed
    canvas (:func:`place_on_canvas`; ``size`` keeps the board's own size)."""
    levels = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                level = json.loads(line)
                level["grid"] = place_on_canvas(level["grid"], canvas)
                parse_level(level["grid"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {number}: not a valid level ({error})") from error
            levels.append(level)
    return levels


# ----------------------------------------------------------------------------------------------
# The gymnasium environment
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The env's full state; :meth:`SokobanEnv.restore` puts it back (the search tree branches from it)."""

    level: Level
    steps: int
    num_invalid_actions: int
    terminated: bool
    truncated: bool


class SokobanEnv(gym.Env):
    """Text Sokoban as a gymnasium env. Introduced in ``notebooks/01_mdp_sokoban.ipynb``.

    Args:
        max_steps: the step budget; the step that spends it unsolved is ``truncated``.
        size: (height, width) of generated levels (``reset`` without a grid).
        num_boxes: boxes in generated levels.
        render_mode: ``"ansi"`` (board text) or ``"rgb_array"`` (an image, ``envs.render.board_image``).

    ``reset(seed=s, options={"grid": text})`` plays a given level; ``reset(seed=s)``
    generates one. ``step("Up")`` returns ``(board_text, reward, terminated,
    truncated, info)`` with ``info`` keys ``action`` (canonical, or ``None`` when
    invalid), ``invalid_action``, ``moved``, ``pushed``, ``success``, ``steps``,
    ``num_invalid_actions``.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"]}

    def __init__(self, max_steps: int = 30, size: tuple[int, int] | int = (6, 6), num_boxes: int = 1,
                 render_mode: str | None = "ansi"):
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.max_steps = max_steps
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.num_boxes = num_boxes
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=4096, charset=GRID_SYMBOLS + "\n")
        self.action_space = spaces.Text(max_length=16)
        self._state: Snapshot | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        grid = (options or {}).get("grid")
        if grid is None:
            grid = generate_level(int(self.np_random.integers(2**31)), self.size, self.num_boxes)
        self._state = Snapshot(parse_level(grid), 0, 0, False, False)
        return self.render_text(), {"steps": 0, "num_invalid_actions": 0, "success": False}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        state = self._state
        if state is None:
            raise RuntimeError("call reset() before step()")
        if state.terminated or state.truncated:
            raise RuntimeError("the episode has ended; call reset() before step()")
        name = canonical_action(action)
        level, moved, pushed = (state.level, False, False) if name is None else move(state.level, name)
        steps = state.steps + 1
        invalid = state.num_invalid_actions + (name is None)
        terminated = level_solved(level)
        truncated = not terminated and steps >= self.max_steps
        if terminated:
            reward = SUCCESS_REWARD
        elif truncated:
            reward = FAILURE_REWARD
        else:
            reward = STEP_REWARD
        self._state = Snapshot(level, steps, invalid, terminated, truncated)
        info = {"action": name, "invalid_action": name is None, "moved": moved, "pushed": pushed,
                "success": terminated, "steps": steps, "num_invalid_actions": invalid}
        return self.render_text(), reward, terminated, truncated, info

    def render_text(self) -> str:
        """The current board text (the observation)."""
        if self._state is None:
            raise RuntimeError("call reset() before rendering")
        return render_level(self._state.level)

    def render(self):
        if self.render_mode == "rgb_array":
            return board_image(self.render_text())
        return self.render_text()

    def snapshot(self) -> Snapshot:
        """The full state as an immutable value (cheap: no copying)."""
        if self._state is None:
            raise RuntimeError("call reset() before snapshot()")
        return self._state

    def restore(self, snapshot: Snapshot) -> str:
        """Put back a state taken by :meth:`snapshot`; returns its observation."""
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"restore() takes a Snapshot from snapshot(), got {type(snapshot).__name__}")
        self._state = snapshot
        return self.render_text()

    @property
    def done(self) -> bool:
        """True once the episode has terminated or been truncated."""
        return self._state is not None and (self._state.terminated or self._state.truncated)
