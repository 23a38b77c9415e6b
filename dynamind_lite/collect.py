"""The RESIM agent, RESIM data collection and its command line.

Introduced in ``notebooks/03_resim_aggregation.ipynb``: the RESIM agent plays
levels (search at every step, aggregate, act), its successful episodes become
the SFT dataset of ``notebooks/04_resim_sft.ipynb``, and its success rate on the
ID/OOD test splits is the upper-bound row of the results table.

One decision of the RESIM agent at time t (paper Sec. 3.1)::

    T_t        = build_tree(env, s_t, pi, b, d, V)        search in the REAL env
    a^ReSim_t  = aggregate(s_t, history, T_t)             one response per tree
    a_t        = parse_answer(a^ReSim_t)                  first action of the chosen plan
    s_{t+1}, r_t = env.step(a_t)

    SFT example = build_messages(s_t, history, h) + [assistant: a^ReSim_t]

Command line::

    python -m dynamind_lite resim --levels data/sokoban/id_train.jsonl --out runs/dev/resim/train.jsonl --seed 0
    python -m dynamind_lite resim --env alfworld --levels data/alfworld/id_test.jsonl --out runs/dev/alfworld.jsonl

The same agent plays any world of ``dynamind_lite.worlds`` (``--env``): on
ALFWorld the rollout policy is the noisy planner and V the planner's remaining
plan length (``search.NoisyExpertPolicy``, ``search.ExpertPlanValue``).

prints a JSON summary (success_rate, ci95, num_levels, num_examples,
dropped_episodes, env_steps_per_decision, mean_response_tokens, ...).

Where we depart from the paper, and why:

- Only successful episodes become SFT data, as in the paper; the summary says
  how many were dropped. An aggregation the LLM could not get right
  (``AggregationRejected``) ends its episode, which counts as unsuccessful
  (and in ``aggregation_rejections``): the agent had no response to act on.
- Each level gets its own rng seeded from (seed, level id), and the rows are
  written in level order, so the file is byte-identical for any ``--workers``.
- The paper states neither b nor d (only that d <= 5). Defaults here: b=2, d=3
  (the tiny preset uses d=2: shorter responses for its tiny model). With the
  exact value function both solve every ID and OOD test level (the paper's
  RESIM: 96.4% on Sokoban), since V already knows the true distance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dynamind_lite.config import AGGREGATORS, ROLLOUT_ORDERS, VALUE_FUNCTIONS
from dynamind_lite.config import ROLLOUT_POLICIES as POLICIES
from dynamind_lite.io import write_jsonl_atomic
from dynamind_lite.metrics import successes_by_optimal_length, wilson_ci95
from dynamind_lite.progress import Progress
from dynamind_lite.prompts import SYSTEM_PROMPT, build_messages, build_refine_messages
from dynamind_lite.resim import AggregationRejected, Aggregator, LLMAggregator, TemplateAggregator, draft_response
from dynamind_lite.search import (
    ExactValue,
    ExpertPlanValue,
    HeuristicValue,
    LLMValueFunction,
    NoisyExpertPolicy,
    NoisySolverPolicy,
    RandomPolicy,
    RolloutPolicy,
    SearchTree,
    ValueFunction,
    build_tree,
)
from dynamind_lite.worlds import WORLDS, get_world


# =========================================================================== #
# Configuration (one typed dataclass, help text per field)
# =========================================================================== #


@dataclass
class ResimConfig:
    """Settings of the RESIM agent and of data collection (``notebooks/03_resim_aggregation.ipynb``)."""

    b: int = field(default=2, metadata={"help": "Rollouts per search tree (paper's b), >= 1."})
    d: int = field(default=3, metadata={"help": "Maximum rollout depth (paper's d, capped at 5 there), >= 1."})
    value: str = field(default="exact", metadata={"help": f"Value function V: one of {VALUE_FUNCTIONS}."})
    policy: str = field(default="noisy_solver", metadata={"help": f"Rollout policy: one of {POLICIES}."})
    epsilon: float = field(default=0.1, metadata={"help": "Random-move probability of the noisy solver, in [0, 1]."})
    explore: float = field(default=0.0, metadata={
        "help": "Probability that the agent plays a random move instead of its answer, in [0, 1): the "
                "episode then visits off-path states and blocked moves, as a learning policy does (text worlds: "
                "an off-path command, half the time a repeated one that does nothing; worlds.AlfWorldWorld)."})
    refine: float = field(default=0.0, metadata={
        "help": "Fraction of decisions that also make a refine SFT example, in [0, 1]: the SimRollout prompt "
                "s^refine (a flawed draft response + the real states of its plan, resim.draft_response) with "
                "a^ReSim as the target, so that a small policy learns to read refine prompts (Stage 2)."})
    rollout_order: str = field(default="search", metadata={
        "help": f"Order of the rollouts in a^ReSim: one of {ROLLOUT_ORDERS}. 'search': as the DFS built them, "
                "the policy's first choice first (the best in most trees); 'action': by action (Up, Down, Left, "
                "Right), so that only the written values tell which rollout is best (SearchTree.in_action_order)."})
    aggregator: str = field(default="template", metadata={"help": f"Aggregator: one of {AGGREGATORS}."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server for llm parts."})
    model: str | None = field(default=None, metadata={"help": "Model name on that server."})
    api_key_env: str = field(default="OPENAI_API_KEY",
                             metadata={"help": "NAME of the environment variable holding the API key."})
    history_len: int = field(default=1, metadata={"help": "h: past (state, action) pairs in the prompt, >= 0."})
    max_steps: int = field(default=30, metadata={"help": "Step budget of an episode, >= 1."})
    seed: int = field(default=0, metadata={"help": "Seed; each level's rng is derived from (seed, level id)."})
    env: str = field(default="sokoban", metadata={
        "help": f"World the agent plays: one of {tuple(WORLDS)} (dynamind_lite.worlds). On alfworld the noisy "
                "solver is the planner and exact V its plan length; the heuristic V is Sokoban's only."})

    def __post_init__(self) -> None:
        for name, meaning in (("b", "number of rollouts"), ("d", "maximum rollout depth"),
                              ("max_steps", "episode step budget")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} ({meaning}) must be an integer >= 1, got {value!r}")
        if isinstance(self.history_len, bool) or not isinstance(self.history_len, int) or self.history_len < 0:
            raise ValueError(f"history_len must be an integer >= 0, got {self.history_len!r}")
        if not isinstance(self.epsilon, (int, float)) or not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be a probability in [0, 1], got {self.epsilon!r}")
        if not isinstance(self.explore, (int, float)) or not 0.0 <= self.explore < 1.0:
            raise ValueError(f"explore must be a probability in [0, 1), got {self.explore!r}")
        if not isinstance(self.refine, (int, float)) or not 0.0 <= self.refine <= 1.0:
            raise ValueError(f"refine must be a fraction in [0, 1], got {self.refine!r}")
        for name, choices in (("value", VALUE_FUNCTIONS), ("policy", POLICIES), ("aggregator", AGGREGATORS),
                              ("rollout_order", ROLLOUT_ORDERS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if "llm" in (self.value, self.aggregator) and not (self.base_url and self.model):
            raise ValueError("an llm value function or aggregator needs base_url and model "
                             "(the API key is read from the environment variable named by api_key_env)")
        if not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        get_world(self.env)
        if self.env != "sokoban" and self.value == "heuristic":
            raise ValueError(f"the heuristic value function is Sokoban's (box distances); env {self.env!r} "
                             "takes value 'exact' (the planner) or 'llm'")

    @classmethod
    def from_preset(cls, preset: Any, **overrides: Any) -> ResimConfig:
        """The RESIM settings of a ``dynamind_lite.config.Preset``; ``overrides``
        (ResimConfig field names) win, ``None`` values are ignored."""
        settings = dict(b=preset.b, d=preset.d, value=preset.value_fn, policy=preset.rollout_policy,
                        epsilon=preset.rollout_epsilon, explore=preset.resim_explore, refine=preset.resim_refine,
                        rollout_order=preset.resim_rollout_order, aggregator=preset.aggregator,
                        history_len=preset.history_len, max_steps=preset.max_steps)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**settings)


def _chat_client(config: ResimConfig):
    from dynamind_lite.llm import ChatClient  # only LLM runs need the openai client

    return ChatClient(config.base_url, config.model, api_key_env=config.api_key_env)


def make_policy(config: ResimConfig, env: Any = None) -> RolloutPolicy:
    """The rollout policy named by ``config.policy`` (text worlds read ``env``: their
    noisy solver is the planner, and random picks among the admissible commands)."""
    if config.env != "sokoban":
        return NoisyExpertPolicy(env, config.epsilon if config.policy == "noisy_solver" else 1.0)
    return NoisySolverPolicy(config.epsilon) if config.policy == "noisy_solver" else RandomPolicy()


def make_value_fn(config: ResimConfig, env: Any = None) -> ValueFunction:
    """The value function named by ``config.value`` (text worlds: the planner's plan length in ``env``)."""
    text_world = config.env != "sokoban"
    if config.value == "llm":
        return LLMValueFunction(_chat_client(config), text_env=env if text_world else None)
    if text_world:
        return ExpertPlanValue(env)
    return ExactValue() if config.value == "exact" else HeuristicValue()


def make_aggregator(config: ResimConfig, env: Any = None) -> Aggregator:
    """The aggregator named by ``config.aggregator`` (an LLM one reads a text world's ``env``)."""
    if config.aggregator == "llm":
        return LLMAggregator(_chat_client(config), history_len=config.history_len, seed=config.seed,
                             text_env=env if config.env != "sokoban" else None)
    return TemplateAggregator(commands=get_world(config.env).commands)


def default_workers() -> int:
    """Cores this process may use (the CLI's default ``--workers``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def level_seed(seed: int, level_id: str) -> int:
    """The rng seed of one level: a hash of (seed, level id), independent of the
    order and the process the level is played in."""
    digest = hashlib.sha256(f"{seed}:{level_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


# =========================================================================== #
# Records
# =========================================================================== #


@dataclass
class ResimStep:
    """One decision of the RESIM agent.

    observation: s_t; response: a^ReSim_t; action: a_t, the move played (its
    answer, or a random move when ``explored``); reward: r_t; env_steps:
    transitions spent on the search tree (search cost); tree_nodes: nodes of
    that tree (root included); explored: a_t was a random move, not the answer;
    draft: ``(draft response, real futures of its plan)`` from
    ``resim.draft_response`` when this decision also makes a refine example, else None;
    task, legal_actions: what a text world's prompt shows besides the observation
    (``prompts.build_messages``), None for Sokoban.
    """

    observation: str
    response: str
    action: str
    reward: float
    env_steps: int
    tree_nodes: int
    explored: bool = False
    draft: tuple[str, list[tuple[str, str]]] | None = None
    task: str | None = None
    legal_actions: list[str] | None = None


@dataclass
class ResimEpisode:
    """One level played by the RESIM agent: the trajectory (s_t, history, a^ReSim_t, r_t).

    level_id, grid: which level (text worlds: ``grid`` is empty); steps: the
    decisions; success: solved; rejected: why the aggregator gave up (the episode
    stopped there), else None; optimal_length: moves of an optimal solution from
    the start when the world knows it without the grid (the planner's), else None;
    system_prompt: the world's system message.
    """

    level_id: str
    grid: str
    steps: list[ResimStep] = field(default_factory=list)
    success: bool = False
    rejected: str | None = None
    optimal_length: int | None = None
    system_prompt: str = SYSTEM_PROMPT

    def history(self, t: int) -> list[tuple[str, str]]:
        """The (state, action) pairs before step t, oldest first."""
        return [(s.observation, s.action) for s in self.steps[:t]]

    def sft_examples(self, history_len: int) -> list[dict[str, list[dict[str, str]]]]:
        """One chat example ``{"messages": [system, user, assistant]}`` per step, and
        after it a refine example (prompt s^refine, ``prompts.build_refine_messages``)
        for each step with a draft; both have a^ReSim_t as the target."""
        rows = []
        for t, step in enumerate(self.steps):
            answer = [{"role": "assistant", "content": step.response}]
            context = dict(system_prompt=self.system_prompt, task=step.task, legal_actions=step.legal_actions)
            rows.append({"messages": build_messages(step.observation, self.history(t), history_len, **context)
                         + answer})
            if step.draft is not None:
                draft, futures = step.draft
                rows.append({"messages": build_refine_messages(step.observation, self.history(t), history_len,
                                                               draft, futures, **context) + answer})
        return rows


# =========================================================================== #
# The RESIM agent (the algorithm)
# =========================================================================== #


def run_resim_episode(level: dict, config: ResimConfig, policy: RolloutPolicy | None = None,
                      value_fn: ValueFunction | None = None, aggregator: Aggregator | None = None,
                      on_tree: Callable[[int, SearchTree, str], None] | None = None) -> ResimEpisode:
    """Play one level with the RESIM agent (``notebooks/03_resim_aggregation.ipynb``).

    Args:
        level: a row of a level file of ``config.env``'s world (Sokoban: ``{"id", "grid"}``).
        config: b, d, max_steps, seed, env, and the named parts used when the
            ``policy``/``value_fn``/``aggregator`` arguments are None (a policy or
            value function that reads the env must be given one that plays in the
            episode's env: leave them None for text worlds).
        on_tree: optional ``callback(t, tree, response)`` called at each decision
            (the notebook uses it to show the agent thinking).
    """
    world = get_world(config.env)
    level_state, _ = world.check_level(level, 0)
    level_id = str(level.get("id", ""))
    text_world = world.commands
    env = world.make_env(config.max_steps, expert=text_world)
    policy = make_policy(config, env) if policy is None else policy
    value_fn = make_value_fn(config, env) if value_fn is None else value_fn
    aggregator = make_aggregator(config, env) if aggregator is None else aggregator
    rng = random.Random(level_seed(config.seed, level_id))
    observation = world.start(env, level_state)
    episode = ResimEpisode(level_id=level_id, grid="" if text_world else level["grid"],
                           optimal_length=len(env.expert_plan) if text_world else None,
                           system_prompt=world.system_prompt)
    done = False
    while not done:
        tree = build_tree(env, env.snapshot(), policy, config.b, config.d, value_fn, rng)  # T_t
        if config.rollout_order == "action":
            tree = tree.in_action_order()
        history = episode.history(len(episode.steps))
        try:
            response = aggregator.aggregate(observation, history, tree)  # a^ReSim_t
        except AggregationRejected as err:
            episode.rejected = str(err)
            break
        action = world.parse_answer(response)  # a_t
        if action is None:
            raise ValueError(f"aggregator {aggregator!r} returned a response without a valid answer: {response!r}")
        if on_tree is not None:
            on_tree(len(episode.steps), tree, response)
        draft = (draft_response(tree, rng, commands=text_world)
                 if config.refine > 0 and rng.random() < config.refine else None)
        explored = config.explore > 0 and rng.random() < config.explore  # off-path: a random move, not a_t
        if explored:
            action = world.random_action(env, rng)
        task, legal = (env.task, env.legal_actions()) if text_world else (None, None)
        next_observation, reward, terminated, truncated, info = env.step(action)
        episode.steps.append(ResimStep(observation=observation, response=response, action=action,
                                       reward=float(reward), env_steps=tree.env_steps, tree_nodes=tree.num_nodes(),
                                       explored=explored, draft=draft, task=task, legal_actions=legal))
        observation, done = next_observation, terminated or truncated
        episode.success = bool(info.get("success"))
    return episode


def _play(job: tuple[dict, ResimConfig, Any, Any, Any]) -> ResimEpisode:
    level, config, policy, value_fn, aggregator = job
    return run_resim_episode(level, config, policy, value_fn, aggregator)


def collect_episodes(levels: Sequence[dict], config: ResimConfig, workers: int = 1, progress: bool = True,
                     policy: RolloutPolicy | None = None, value_fn: ValueFunction | None = None,
                     aggregator: Aggregator | None = None) -> list[ResimEpisode]:
    """Play every level with the RESIM agent; episodes come back in level order.

    workers: processes, >= 1 (each level is independent; the result does not
    depend on it). progress: show a tqdm bar. The optional parts override the
    ones named in ``config`` (they are pickled to the workers).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    jobs = [(level, config, policy, value_fn, aggregator) for level in levels]
    bar = Progress(len(jobs), "RESIM episodes", unit="episode", bar=progress)  # plain lines in batch mode
    try:
        if workers == 1 or len(jobs) <= 1:
            episodes = []
            for job in jobs:
                episodes.append(_play(job))
                bar.update()
            return episodes
        processes = min(workers, len(jobs))
        chunksize = max(1, min(16, len(jobs) // (8 * processes)))  # fewer round trips, a smooth progress bar
        # spawn, not fork: safe inside a Jupyter kernel (its threads do not survive a fork)
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            episodes = []
            for episode in pool.imap(_play, jobs, chunksize=chunksize):  # imap keeps level order
                episodes.append(episode)
                bar.update()
            return episodes
    finally:
        bar.close()


# =========================================================================== #
# SFT data, summaries, evaluation (plumbing)
# =========================================================================== #


def sft_rows(episodes: Iterable[ResimEpisode], history_len: int) -> list[dict]:
    """SFT examples of the successful episodes only (the paper keeps successes)."""
    return [row for episode in episodes if episode.success for row in episode.sft_examples(history_len)]


def load_tokenizer(name_or_path: str | None = None) -> tuple[Any, str]:
    """The tokenizer that response lengths are counted in, and its name.

    Default: the project's tiny tokenizer at ``data/models/tiny-base`` when it is
    there, else ``dynamind_lite.models.tokenizer.build_tokenizer()``.
    """
    from transformers import AutoTokenizer

    from dynamind_lite.paths import tiny_base_dir

    if name_or_path is not None:
        return AutoTokenizer.from_pretrained(name_or_path), str(name_or_path)
    try:
        path = tiny_base_dir()
    except FileNotFoundError:
        path = None
    if path is not None and (path / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(path)), "tiny-base (data/models/tiny-base)"
    from dynamind_lite.models.tokenizer import build_tokenizer

    return build_tokenizer(), "dynamind_lite.models.tokenizer.build_tokenizer()"


def count_tokens(texts: Iterable[str], tokenizer: Any) -> list[int]:
    """Tokens of each text, without special tokens."""
    return [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def summarize(episodes: Sequence[ResimEpisode], num_examples: int, tokenizer: Any = None,
              tokenizer_name: str | None = None) -> dict[str, Any]:
    """The JSON summary of a RESIM run (all decisions count, not only kept ones).

    success_rate in [0, 1] with its 95% Wilson interval ``ci95``;
    env_steps_per_decision: search cost; mean_response_tokens: length of
    a^ReSim in ``tokenizer`` (omitted without one).
    """
    successes = sum(e.success for e in episodes)
    steps = [s for e in episodes for s in e.steps]
    decisions = max(len(steps), 1)
    low, high = wilson_ci95(successes, len(episodes))
    summary: dict[str, Any] = {
        "num_levels": len(episodes),
        "num_successes": successes,
        "success_rate": successes / len(episodes) if episodes else 0.0,
        "ci95": [low, high],
        "num_examples": num_examples,
        "dropped_episodes": len(episodes) - successes,
        "aggregation_rejections": sum(e.rejected is not None for e in episodes),
        "num_decisions": len(steps),
        "mean_episode_steps": len(steps) / max(len(episodes), 1),
        "env_steps_per_decision": sum(s.env_steps for s in steps) / decisions,
        "tree_nodes_per_decision": sum(s.tree_nodes for s in steps) / decisions,
        "successes_by_optimal_length": successes_by_optimal_length(episodes),
    }
    if tokenizer is not None:
        lengths = count_tokens((s.response for s in steps), tokenizer)
        summary["mean_response_tokens"] = sum(lengths) / decisions
        summary["max_response_tokens"] = max(lengths, default=0)
        summary["tokenizer"] = tokenizer_name
    return summary


def collect_sft_data(levels: Sequence[dict], out: str | os.PathLike, config: ResimConfig, workers: int = 1,
                     progress: bool = True, tokenizer: Any = None, tokenizer_name: str | None = None,
                     **parts: Any) -> dict[str, Any]:
    """Run the RESIM agent over ``levels``, write the SFT JSONL of its successful
    episodes to ``out`` (atomically) and return the summary
    (``notebooks/03_resim_aggregation.ipynb``). ``parts``: policy, value_fn,
    aggregator overrides (see ``collect_episodes``)."""
    episodes = collect_episodes(levels, config, workers=workers, progress=progress, **parts)
    rows = sft_rows(episodes, config.history_len)
    write_jsonl_atomic(out, rows)
    return summarize(episodes, len(rows), tokenizer, tokenizer_name)


def evaluate_resim(splits: dict[str, str | os.PathLike], config: ResimConfig, limit: int | None = None,
                   workers: int = 1, progress: bool = True, tokenizer: Any = None,
                   tokenizer_name: str | None = None, canvas: int = 0) -> dict[str, Any]:
    """Success of the RESIM agent on each level split: the upper-bound row of the
    results table (``notebooks/03_resim_aggregation.ipynb``). ``canvas``: play the
    boards on that fixed canvas (``envs.sokoban.place_on_canvas``; 0: as they are).

    Returns ``{"method": "RESIM", "config": {...}, "tokenizer": name,
    "splits": {split: summary}}`` where each summary has success_rate, ci95,
    num_levels, env_steps_per_decision, mean_response_tokens (see ``summarize``).
    The agent acts on its answers here: ``config.explore`` (random moves while
    collecting data) is set to 0.
    """
    config = replace(config, explore=0.0, refine=0.0)  # at inference the agent plays its answers
    results = {}
    for name, path in splits.items():
        levels = get_world(config.env).load_levels(path, canvas)[:limit]
        episodes = collect_episodes(levels, config, workers=workers, progress=progress)
        results[name] = summarize(episodes, len(sft_rows(episodes, config.history_len)), tokenizer,
                                  tokenizer_name)
    return {"method": "RESIM", "config": asdict(config), "tokenizer": tokenizer_name, "splits": results}


# =========================================================================== #
# Command line: python -m dynamind_lite resim ...
# =========================================================================== #


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dynamind_lite resim",
        description="Run the RESIM agent over a level file and write SFT data (JSONL chat messages) "
                    "of its successful episodes; prints a JSON summary.")
    parser.add_argument("--levels", required=True,
                        help="Level file (JSONL), e.g. data/sokoban/id_train.jsonl or data/alfworld/id_train.jsonl; "
                             "with --env alfworld also a folder of real games (<task>/trial_*/game.tw-pddl).")
    parser.add_argument("--out", required=True, help="Output SFT JSONL path (written atomically).")
    helps = {f.name: f.metadata["help"] for f in fields(ResimConfig)}
    defaults = ResimConfig()
    parser.add_argument("--env", choices=tuple(WORLDS), default=defaults.env, help=helps["env"])
    parser.add_argument("--seed", type=int, default=defaults.seed, help=helps["seed"])
    parser.add_argument("--b", type=int, default=defaults.b, help=helps["b"])
    parser.add_argument("--d", type=int, default=defaults.d, help=helps["d"])
    parser.add_argument("--value", choices=VALUE_FUNCTIONS, default=defaults.value, help=helps["value"])
    parser.add_argument("--policy", choices=POLICIES, default=defaults.policy, help=helps["policy"])
    parser.add_argument("--epsilon", type=float, default=defaults.epsilon, help=helps["epsilon"])
    parser.add_argument("--explore", type=float, default=defaults.explore, help=helps["explore"])
    parser.add_argument("--refine", type=float, default=defaults.refine, help=helps["refine"])
    parser.add_argument("--rollout-order", choices=ROLLOUT_ORDERS, default=defaults.rollout_order,
                        help=helps["rollout_order"])
    parser.add_argument("--aggregator", choices=AGGREGATORS, default=defaults.aggregator, help=helps["aggregator"])
    parser.add_argument("--base-url", default=None, help=helps["base_url"])
    parser.add_argument("--model", default=None, help=helps["model"])
    parser.add_argument("--api-key-env", default=defaults.api_key_env, help=helps["api_key_env"])
    parser.add_argument("--history-len", type=int, default=defaults.history_len, help=helps["history_len"])
    parser.add_argument("--max-steps", type=int, default=None,
                        help=helps["max_steps"] + " Default: the world's (Sokoban 30, ALFWorld 50).")
    parser.add_argument("--limit", type=int, default=None, help="Play only the first N levels, N >= 1.")
    parser.add_argument("--canvas", type=int, default=0,
                        help="Play every board on a fixed CANVAS x CANVAS layout (0: as it is; the tiny preset uses 8).")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="Worker processes, >= 1 (default: every core this process may use; "
                             "the output does not depend on it).")
    parser.add_argument("--tokenizer", default=None,
                        help="Tokenizer (local path) to count response tokens in; default the tiny-base one.")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # validate everything before any search runs
        config = ResimConfig(b=args.b, d=args.d, value=args.value, policy=args.policy, epsilon=args.epsilon,
                             explore=args.explore, refine=args.refine, rollout_order=args.rollout_order,
                             aggregator=args.aggregator, base_url=args.base_url, model=args.model,
                             api_key_env=args.api_key_env, history_len=args.history_len,
                             max_steps=args.max_steps or get_world(args.env).default_max_steps, seed=args.seed,
                             env=args.env)
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        if args.env == "sokoban" and not Path(args.levels).is_file():
            raise ValueError(f"--levels: no such file {args.levels!r}")
        if Path(args.out).is_dir():
            raise ValueError(f"--out must be a file path, {args.out!r} is a folder")
        levels = get_world(args.env).load_levels(args.levels, args.canvas)[:args.limit]
        if not levels:
            raise ValueError(f"--levels: {args.levels!r} holds no levels")
        get_world(args.env).check_installed()
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    tokenizer, tokenizer_name = load_tokenizer(args.tokenizer)
    summary = collect_sft_data(levels, args.out, config, workers=args.workers, progress=not args.no_progress,
                               tokenizer=tokenizer, tokenizer_name=tokenizer_name)
    summary = {"levels": str(args.levels), "out": str(args.out), **summary, "config": asdict(config)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
