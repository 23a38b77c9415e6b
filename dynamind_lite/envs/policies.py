"""Playing whole episodes with a simple policy, and the returns they collect.

Introduced in ``notebooks/01_mdp_sokoban.ipynb``, where a uniformly random
policy and the optimal (solver) policy set the floor and the ceiling of the
return G = sum_t r_t on the ID and OOD test levels; every later method (REACT,
RESIM, DISTILL(RESIM)) lands in between.

A policy has the rollout-policy interface of ``dynamind_lite.search``:
``policy(observation, rng, exclude=()) -> action``. The two used here are
search's own ``RandomPolicy`` and ``NoisySolverPolicy`` with epsilon = 0.

Departures from the paper: none; the paper reports neither baseline, they are
reference points of this course.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from dynamind_lite.envs.sokoban import SokobanEnv
from dynamind_lite.search import NoisySolverPolicy, RandomPolicy, RolloutPolicy

random_policy = RandomPolicy()
"""pi(a | s) = 1/4 for each of Up, Down, Left, Right (``notebooks/01_mdp_sokoban.ipynb``)."""

solver_policy = NoisySolverPolicy(epsilon=0.0)
"""The optimal policy: a move that lowers the exact solver distance to the goal
(ties: order of ``ACTIONS``). On a level solvable in n <= max_steps moves it
collects G = 10 - 0.1 (n - 1), the most any policy can (``notebooks/01_mdp_sokoban.ipynb``)."""


@dataclass(frozen=True)
class EpisodeResult:
    """One played episode (``notebooks/01_mdp_sokoban.ipynb``).

    episode_return: G = sum_t r_t: 10 - 0.1 (k - 1) when solved in k steps (k >= n, the
        optimal length), -0.1 (max_steps - 1) when the budget runs out unsolved.
    success: the level was solved.
    steps: actions taken, in 1..max_steps.
    actions: those actions.
    """

    episode_return: float
    success: bool
    steps: int
    actions: tuple[str, ...]


def play_episode(grid: str, policy: RolloutPolicy, max_steps: int = 30, rng: random.Random | None = None,
                 env: SokobanEnv | None = None) -> EpisodeResult:
    """Play ``policy`` on the level ``grid`` until it is solved or ``max_steps``
    actions are spent (``notebooks/01_mdp_sokoban.ipynb``).

    rng: the policy's randomness (default ``random.Random(0)``).
    env: an env to reuse (its own ``max_steps`` is then used); default: a new one.
    """
    rng = random.Random(0) if rng is None else rng
    env = SokobanEnv(max_steps=max_steps) if env is None else env
    observation, _ = env.reset(options={"grid": grid})
    rewards, actions, info = [], [], {"success": False}
    while not env.done:
        action = policy(observation, rng)
        observation, reward, _, _, info = env.step(action)
        rewards.append(reward)
        actions.append(action)
    return EpisodeResult(episode_return=float(sum(rewards)), success=bool(info["success"]), steps=len(actions),
                         actions=tuple(actions))


def returns_of_policy(grids: Sequence[str], policy: RolloutPolicy, max_steps: int = 30,
                      seed: int = 0) -> list[EpisodeResult]:
    """One episode of ``policy`` on each level of ``grids``, in order
    (``notebooks/01_mdp_sokoban.ipynb``). Episode i draws its randomness from
    ``random.Random(seed + i)``, so results do not depend on which other levels
    are played."""
    env = SokobanEnv(max_steps=max_steps)
    return [play_episode(grid, policy, rng=random.Random(seed + i), env=env) for i, grid in enumerate(grids)]


def summarise(results: Sequence[EpisodeResult]) -> dict[str, float | int]:
    """Mean return, success rate and mean episode length of ``results``
    (``notebooks/01_mdp_sokoban.ipynb``)."""
    if not results:
        raise ValueError("summarise needs at least one episode result")
    n = len(results)
    return {"episodes": n, "mean_return": sum(r.episode_return for r in results) / n,
            "success_rate": sum(r.success for r in results) / n, "mean_steps": sum(r.steps for r in results) / n}
