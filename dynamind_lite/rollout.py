"""The agent loop: a policy (any ``Generator``) plays many levels at once, in any world.

Introduced in ``notebooks/04_resim_sft.ipynb``; used by the evaluation harness
(``dynamind_lite.evaluate``) for every row of the results table.

One decision of the agent at time t (paper Sec. 2, the MDP (S, A, T, R))::

    prompt_t   = build_messages(s_t, history, h)        system + last h (s, a) pairs + s_t
    response_t ~ pi_theta(. | prompt_t)                  <think>...</think><answer>a_t</answer>
    a_t        = parse_answer(response_t)                None when malformed
    s_{t+1}, r_t, terminated, truncated = env.step(a_t)

The prompt comes from ``prompts.build_messages``, the same function that builds
the SFT data, and the answer is read by ``response.parse_answer``, the same
parser the data is checked with, so training and evaluation cannot drift apart.

Where we depart from the paper (which does not describe its loop) and why:

- A malformed response (no tags, text around them, unknown action, or cut off at
  ``max_new_tokens``) is never a crash: it is an *invalid action*, played as a
  no-op step that costs the step reward (-0.1) and is counted by the env (the
  convention of RAGEN, which the paper's Sokoban set-up follows). A cut-off
  response is invalid even when its prefix happens to parse, because the model
  did not finish its turn.
- In the history shown to the policy an invalid step appears as
  ``Action: (invalid)``; the SFT data only ever shows valid actions.
- Environments are stepped in lock-step batches: at each round every running
  episode asks the generator for one response, all in one ``generate`` call
  (``batch_size`` episodes in flight; a finished one is replaced by the next
  level). Greedy decoding makes the records a function of the inputs alone; with
  sampling, round k uses seed ``seed + k``, so the same seed and batch size give
  the same records.
- SimRollout episodes (``simrollout=``, paper Sec. 3.2, ``notebooks/05_simrollout.ipynb``)
  run in the same loop: after the first responses of a round, each SimRollout
  episode executes its plan from a snapshot (``simrollout.execute_plan``), and
  all refine prompts are answered in one more ``generate`` call, sampled with
  seed ``seed + REFINE_SEED_OFFSET + k`` in round k. The refined response is
  the one played; the first one is kept on ``StepRecord.refinement``.
- The loop takes a world (``dynamind_lite.worlds``: Sokoban by default, ALFWorld):
  it makes the env, writes the prompt (ALFWorld's shows the task and the
  admissible commands) and reads the answer. In a text world a command that
  is not admissible is played (the env answers "Nothing happens.") and counted
  invalid (``StepRecord.env_invalid``), as is a malformed response.
- Under greedy decoding an episode whose prompt is one it already answered
  (a blocked move repeated, or a loop such as Left, Right, Left, ...: the same
  state and history window again) reuses that response instead of generating
  it again: the answer would be the same, and such loops are where a weak
  policy spends most of its step budget. On the tiny model's test splits this
  skips half or more of the generate calls of an evaluation
  (``benchmarks/bench_eval_reuse.py``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamind_lite.generation import Generation, GenerationConfig, Generator
from dynamind_lite.progress import Progress
from dynamind_lite.simrollout import MAX_PLAN_DEPTH, Refinement, execute_plan, extract_plan
from dynamind_lite.worlds import SOKOBAN

INVALID_HISTORY_ACTION = "(invalid)"
"""How an invalid step is written in the history part of later prompts."""

INVALID_ENV_ACTION = "<invalid>"
"""What the env is given for an invalid step: a string no parser reads as an
action, so the env plays it as an invalid no-op and counts it. (Passing the raw
response could be read as a move: a bare ``"Up"`` without tags is malformed for
the policy but a valid action name for the env.)"""

REFINE_SEED_OFFSET = 100_000
"""SimRollout's refine generations of round k are sampled with seed ``seed + REFINE_SEED_OFFSET + k``,
a stream apart from the first responses' ``seed + k``."""


# --------------------------------------------------------------------------- #
# Records (what the loop writes down)
# --------------------------------------------------------------------------- #


@dataclass
class StepRecord:
    """One decision of one episode.

    t: step index, 0-based.
    observation: s_t, the grid text the policy saw.
    messages: the prompt, ``[system, user]`` chat messages (``prompts.build_messages``).
    response: the generated text, as decoded.
    num_tokens: tokens generated for it (Gen.Token counts these), typically 5-600.
    prompt_tokens: tokens of the rendered prompt, or None when the backend does
        not report it.
    finish_reason: ``"stop"`` (end of turn) or ``"length"`` (cut at max_new_tokens).
    action: the canonical action played, or None for an invalid step.
    reward: r_t in {-0.1, 0.0, 10.0}.
    next_observation: s_{t+1}, the real state after the step.
    terminated, truncated: the env's episode-end flags after this step.
    refinement: what SimRollout did at this step (``simrollout.Refinement``), None
        in a standard episode. When it refined, ``response`` is the refined
        response a^refine (the one played) and ``messages`` still the original
        prompt s_t: the pair is a sample of tau' (paper Sec. 3.2).
    env_invalid: the env refused the action (a text world's command that is not
        admissible); always False in Sokoban, where every move is legal.
    snapshot: the env's snapshot of s_t in a text world (its text alone is not
        the state: the Sim Score replays plans from it), else None.
    """

    t: int
    observation: str
    messages: list[dict[str, str]]
    response: str
    num_tokens: int
    prompt_tokens: int | None
    finish_reason: str | None
    action: str | None
    reward: float
    next_observation: str
    terminated: bool
    truncated: bool
    refinement: Refinement | None = None
    env_invalid: bool = False
    snapshot: Any = None

    @property
    def invalid(self) -> bool:
        return self.action is None or self.env_invalid


@dataclass
class EpisodeRecord:
    """One played level.

    level_id: the level's ``id`` (or its index in the list when it has none).
    grid: s_0, the initial grid ("" in a text world).
    steps: every StepRecord, in order (1 <= len <= max_steps).
    success: whether the episode ended solved.
    optimal_length: moves of an optimal solution from s_0 when the world knows it
        without a grid (ALFWorld's planner), else None.
    level: the level itself in a text world (to replay it), else None.
    """

    level_id: str
    grid: str
    steps: list[StepRecord] = field(default_factory=list)
    success: bool = False
    optimal_length: int | None = None
    level: dict | None = None

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def total_reward(self) -> float:
        """The return R(tau) = sum_t r_t."""
        return sum(step.reward for step in self.steps)

    @property
    def num_invalid_actions(self) -> int:
        return sum(step.invalid for step in self.steps)

    @property
    def num_generated_tokens(self) -> int:
        """Tokens generated over the episode, SimRollout's first responses included."""
        return sum(step.num_tokens + (step.refinement.first_num_tokens if step.refinement and
                                      step.refinement.refined else 0) for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``json.dumps`` works on it)."""
        record = dataclasses.asdict(self)
        record.update(num_steps=self.num_steps, total_reward=self.total_reward,
                      num_invalid_actions=self.num_invalid_actions)
        return record


# --------------------------------------------------------------------------- #
# The loop
# --------------------------------------------------------------------------- #


@dataclass
class _RunningEpisode:
    env: Any
    record: EpisodeRecord
    observation: str
    history: list[tuple[str, str]] = field(default_factory=list)
    answered: dict[str, Generation] = field(default_factory=dict)  # prompt (JSON) -> its generation, greedy reuse


def response_action(generation: Generation, world: Any = SOKOBAN) -> str | None:
    """a_t: the canonical action of a finished, well-formed response, else None
    (malformed, unknown action, or cut off at max_new_tokens)."""
    if generation.finish_reason == "length":
        return None
    return world.parse_answer(generation.text)


def run_episodes(
    generator: Generator,
    levels: Sequence[dict | str],
    *,
    max_steps: int = 30,
    history_len: int = 1,
    generation_config: GenerationConfig | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
    simrollout: bool | Sequence[bool] = False,
    max_plan_depth: int = MAX_PLAN_DEPTH,
    world: Any = SOKOBAN,
) -> list[EpisodeRecord]:
    """Play every level once with ``generator`` as the policy.

    Args:
        generator: any object with ``generate(conversations, config) -> list[Generation]``
            (HF, vLLM, an OpenAI-compatible server).
        levels: rows of a level file of ``world`` (Sokoban: dicts with a ``grid``
            and ``id``, as ``envs.sokoban.load_levels`` returns them, or bare grid strings).
        max_steps: step budget of each episode, >= 1 (typically 30 for 6x6).
        history_len: h, previous (state, action) pairs in the prompt, >= 0.
        generation_config: decoding settings; default ``GenerationConfig()``.
        batch_size: episodes in flight at once (one ``generate`` call each round), >= 1.
        seed: round k of the loop generates with seed ``seed + k``.
        progress: show a bar of finished episodes (batch mode prints lines anyway, ``progress.Progress``).
        simrollout: play SimRollout episodes: True for all, or one flag per level.
        max_plan_depth: SimRollout's cap on d, the executed plan length (paper: 5).
        world: the world the levels belong to (``dynamind_lite.worlds``; default Sokoban).

    Returns:
        One EpisodeRecord per level, in the order of ``levels``.
    """
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    if not isinstance(history_len, int) or history_len < 0:
        raise ValueError(f"history_len must be an integer >= 0, got {history_len!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    config = GenerationConfig() if generation_config is None else generation_config
    parsed = [world.check_level(level, i) for i, level in enumerate(levels)]
    refine_flags = [bool(simrollout)] * len(parsed) if isinstance(simrollout, bool) else list(simrollout)
    if len(refine_flags) != len(parsed):
        raise ValueError(f"simrollout has {len(refine_flags)} flags for {len(parsed)} levels")
    if not isinstance(max_plan_depth, int) or max_plan_depth < 1:
        raise ValueError(f"max_plan_depth must be an integer >= 1, got {max_plan_depth!r}")

    records: list[EpisodeRecord | None] = [None] * len(parsed)
    waiting = list(range(len(parsed)))[::-1]  # pop() hands out levels in order
    running: list[tuple[int, _RunningEpisode]] = []
    round_index = 0
    bar = Progress(len(parsed), "episodes", unit="episode", bar=progress)  # plain lines in batch mode
    while waiting or running:
        # ---- fill the free slots with new episodes -------------------------- #
        while waiting and len(running) < batch_size:
            index = waiting.pop()
            level, level_id = parsed[index]
            env = world.make_env(max_steps, expert=world.commands)  # the planner gives a text world's optimal length
            observation = world.start(env, level)
            record = (EpisodeRecord(level_id, "", optimal_length=len(env.expert_plan), level=level)
                      if world.commands else EpisodeRecord(level_id, level))
            running.append((index, _RunningEpisode(env, record, observation)))

        # ---- one decision for every running episode: prompt -> response ---- #
        prompts = [world.messages(ep.env, ep.observation, ep.history, history_len) for _, ep in running]
        # Greedy decoding answers the same prompt with the same response, so an episode back at a prompt
        # it saw before (a blocked move repeated, or a loop of moves: same state and history) reuses that
        # response: the episode replays its loop exactly, without generating it again.
        sampling = config.do_sample and config.temperature > 0
        keys = [] if sampling else [json.dumps(prompt) for prompt in prompts]  # sampled answers are never reused
        generations = ([None] * len(running) if sampling
                       else [ep.answered.get(key) for (_, ep), key in zip(running, keys)])
        fresh = [i for i, generation in enumerate(generations) if generation is None]
        round_config = dataclasses.replace(config, seed=seed + round_index)
        new = generator.generate([prompts[i] for i in fresh], round_config) if fresh else []
        if len(new) != len(fresh):
            raise RuntimeError(f"generator returned {len(new)} generations for {len(fresh)} prompts")
        for i, generation in zip(fresh, new):
            generations[i] = generation
        firsts = list(generations)  # what greedy reuse keys on: the response to the prompt itself

        # ---- SimRollout episodes: run the plan for real, then refine -------- #
        refinements: dict[int, Refinement] = {}
        for i, ((index, ep), generation) in enumerate(zip(running, generations)):
            if refine_flags[index]:
                plan = extract_plan(generation.text, max_plan_depth, commands=world.commands)
                futures = execute_plan(ep.env, plan.actions) if plan.actions else []  # s'_{t+1..t+d}
                messages = world.refine_messages(ep.env, ep.observation, ep.history, history_len, generation.text,
                                                 futures) if futures else None  # s_t^refine
                refinements[i] = Refinement(generation.text, int(generation.num_tokens), plan, futures, messages)
        to_refine = [i for i, refinement in refinements.items() if refinement.refined]
        if to_refine:
            refine_config = dataclasses.replace(config, seed=seed + REFINE_SEED_OFFSET + round_index)
            refined = generator.generate([refinements[i].messages for i in to_refine], refine_config)
            if len(refined) != len(to_refine):
                raise RuntimeError(f"generator returned {len(refined)} generations for {len(to_refine)} prompts")
            for i, generation in zip(to_refine, refined):
                generations[i] = generation  # a^refine is the response played

        # ---- act in every env; record the real transition ------------------- #
        still_running = []
        for i, ((index, ep), messages, generation) in enumerate(zip(running, prompts, generations)):
            action = response_action(generation, world)
            snapshot = ep.env.snapshot() if world.commands else None
            next_observation, reward, terminated, truncated, info = ep.env.step(
                INVALID_ENV_ACTION if action is None else action)
            ep.record.steps.append(StepRecord(
                t=len(ep.record.steps), observation=ep.observation, messages=messages,
                response=generation.text, num_tokens=int(generation.num_tokens),
                prompt_tokens=generation.prompt_tokens, finish_reason=generation.finish_reason,
                action=action, reward=float(reward), next_observation=next_observation,
                terminated=bool(terminated), truncated=bool(truncated), refinement=refinements.get(i),
                env_invalid=action is not None and bool(info.get("invalid", False)), snapshot=snapshot))
            if not sampling:
                ep.answered[keys[i]] = firsts[i]
            ep.history.append((ep.observation, INVALID_HISTORY_ACTION if action is None else action))
            ep.observation = next_observation
            if terminated or truncated:
                ep.record.success = bool(info.get("success", False))
                records[index] = ep.record
                bar.update()
            else:
                still_running.append((index, ep))
        running = still_running
        round_index += 1
        bar.update(0, round=round_index)  # a batch-mode line even while no episode ends
    bar.close()
    return records  # type: ignore[return-value]
