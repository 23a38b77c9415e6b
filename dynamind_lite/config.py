"""Presets: every knob of a run in one typed dataclass, three sizes.

Introduced in ``notebooks/04_resim_sft.ipynb``; every notebook takes a
``preset`` parameter and reads its defaults from here.

* ``tiny``: the shipped ~0.46M-parameter Qwen2-architecture model
  (``data/models/tiny-base``) on a CPU, the whole pipeline in minutes.
* ``small``: ``Qwen/Qwen2.5-0.5B-Instruct`` with 4-bit QLoRA, a free Colab T4.
* ``full``: ``Qwen/Qwen2.5-7B-Instruct`` with LoRA and vLLM, the paper's model.

Where we depart from the paper, and why:

- The paper does not state b, d, dataset sizes, LoRA vs full fine-tuning or
  learning rates (its predecessor Dyna-Think fine-tuned fully, lr 5e-6). The
  full preset uses LoRA r=64 at lr 1e-4 (one 80 GB GPU); the tiny preset uses
  b=2, d=1 (short responses are cheap to learn and to generate on a CPU) and
  fine-tunes all weights of its tiny model (see the ``tiny`` entry below).
- Sim Score is computed exactly for Sokoban (simulated grid == real grid), so
  no judge model is configured here.

``get_preset(name, **overrides)`` takes flat scalar overrides (papermill
parameters) by field name and validates them before anything heavy runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints

BACKENDS = ("hf", "vllm", "openai")
VALUE_FUNCTIONS = ("exact", "heuristic", "llm")
AGGREGATORS = ("template", "llm")
ROLLOUT_POLICIES = ("noisy_solver", "random")
ROLLOUT_ORDERS = ("search", "action")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Preset:
    """One run's settings (introduced in ``notebooks/04_resim_sft.ipynb``)."""

    name: str
    """Preset name: ``tiny``, ``small`` or ``full``."""

    # ---- the policy model pi_theta -------------------------------------- #
    model_name_or_path: str
    """Base policy: hub id or ``save_pretrained`` directory, loaded by ``models.load_policy``."""
    device: str = "auto"
    """``cpu``, ``cuda`` or ``auto`` (a GPU when one is visible)."""
    dtype: str = "auto"
    """Weights/compute dtype: ``float32``, ``bfloat16``, ``float16``, ``auto`` (fp32 on CPU, bf16 on GPU)."""
    load_in_4bit: bool = False
    """QLoRA: quantise frozen weights to 4-bit NF4 (bitsandbytes); needs LoRA."""
    full_finetune: bool = False
    """Train every weight instead of LoRA adapters."""
    lora_r: int = 16
    """LoRA rank r (update B A with B: [d_out, r]); typical 8-64."""
    lora_alpha: int = 32
    """LoRA scale alpha (update multiplied by alpha / r); typical 2 r."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input, in [0, 1)."""
    lora_target_modules: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    """Comma-separated names of the linear layers that get adapters."""

    # ---- RESIM distillation SFT (paper Sec. 3.1) ------------------------- #
    sft_epochs: float = 2.0
    """Passes over the a^ReSim dataset."""
    sft_learning_rate: float = 1e-4
    """Peak learning rate (AdamW, linear decay after warm-up); > 0."""
    sft_warmup_ratio: float = 0.03
    """Fraction of steps with linear warm-up, in [0, 1)."""
    sft_batch_size: int = 4
    """Examples per device per optimiser micro-step."""
    sft_grad_accum: int = 4
    """Micro-steps accumulated per optimiser step (effective batch = batch_size * grad_accum)."""
    sft_max_seq_len: int = 2048
    """Longest tokenised example (prompt + a^ReSim); longer ones are truncated."""
    sft_max_steps: int = -1
    """Stop after this many optimiser steps (-1: run ``sft_epochs``)."""
    sft_save_steps: int = 200
    """Save a resumable checkpoint every this many optimiser steps."""
    sft_logging_steps: int = 10
    """Record the training loss every this many optimiser steps (the loss curve's resolution)."""
    sft_group_by_length: bool = False
    """Batch examples of similar length (the Trainer's ``group_by_length`` sampling: shuffled groups of
    50 batches, sorted by length inside), so less of each batch is padding; batches stay random."""
    sft_sort_micro_batches: bool = False
    """Draw each optimiser step's ``sft_batch_size * sft_grad_accum`` examples at random, as usual, and sort
    them by length across its micro-batches (``training.LengthSortedStepSampler``): the same examples per
    step and the same gradient, less padding. Needs ``sft_grad_accum`` > 1 to save anything."""
    sft_fused_lm_head: bool = True
    """True: TRL's loss path, a chunked LM head that never holds the full logits (a vocabulary of 152k
    tokens would need GBs) and also logs entropy and token accuracy. False: the model's own loss from
    the full logits, the same eq. (1) without those logs; faster for a small vocabulary."""

    # ---- generation (agent loop, evaluation) ----------------------------- #
    generation_backend: str = "hf"
    """``hf`` (transformers in process), ``vllm`` (GPU), ``openai`` (a server)."""
    max_new_tokens: int = 1024
    """Cap on tokens per response; a cut response is an invalid action."""
    temperature: float = 0.0
    """Sampling temperature; 0 = greedy (evaluation default)."""
    eval_batch_size: int = 32
    """Episodes in flight at once (one batched generate call per step)."""

    # ---- the environment and the prompt --------------------------------- #
    max_steps: int = 30
    """Step budget T of a Sokoban episode."""
    board_canvas: int = 0
    """Play every board on a fixed canvas x canvas layout (walls added right and below;
    ``envs.sokoban.place_on_canvas``); 0 plays boards as they are. Must fit the largest board (8)."""
    react_eval_levels: int = 0
    """Test levels per split the REACT base model plays (0: all). Its Gen.Token needs few; a base
    model that cannot solve a level gains nothing from 300 more 30-step episodes."""
    history_len: int = 1
    """h: most recent (state, action) pairs shown in the prompt."""

    # ---- RESIM data collection (paper Sec. 3.1) -------------------------- #
    num_resim_levels: int = 1000
    """Training levels the RESIM agent plays to make SFT data (the first N of ``resim_train_levels``;
    mix_train has 1640, its families shuffled together)."""
    b: int = 2
    """b: rollouts per search tree."""
    d: int = 3
    """d: maximum depth of a rollout (the paper caps d at 5)."""
    rollout_policy: str = "noisy_solver"
    """Policy that expands the tree: ``noisy_solver`` (solver + random moves) or ``random``."""
    rollout_epsilon: float = 0.1
    """Random-move probability of the noisy solver, in [0, 1]."""
    resim_explore: float = 0.1
    """Probability that the RESIM agent plays a random move instead of its answer while it collects
    SFT data, in [0, 1): the data then shows off-path states and blocked moves in the history."""
    resim_refine: float = 0.0
    """Fraction of RESIM decisions that also make a refine SFT example (``collect.ResimConfig.refine``), in
    [0, 1]: a policy that never saw a SimRollout refine prompt cannot read one (Stage 2)."""
    resim_rollout_order: str = "search"
    """Order of the rollouts in a^ReSim (``collect.ResimConfig.rollout_order``): ``search`` (the DFS's, the
    policy's first choice first) or ``action`` (by action, so that only the values tell the best one)."""
    resim_train_levels: str = "mix_train"
    """Level split of ``data/sokoban/`` the RESIM agent plays for SFT data (its first ``num_resim_levels``)."""
    value_fn: str = "exact"
    """V_nu scoring a rollout's leaf: ``exact`` (solver distance), ``heuristic``, ``llm``."""
    aggregator: str = "template"
    """Tree -> a^ReSim: ``template`` (deterministic, offline) or ``llm`` (the paper's way)."""

    # ---- Stage 2: GRPO and Dyna-GRPO (paper Sec. 3.2) --------------------- #
    rl_iterations: int = 12
    """RL iterations (each: rollouts on ``rl_tasks`` tasks, then one update of mu optimiser steps)."""
    rl_tasks: int = 8
    """Tasks (levels) per iteration; each is played G times."""
    rl_group_size: int = 8
    """G: episodes per task (Dyna-GRPO's simulation phase: G/2 SimRollout + G/2 standard); even, >= 2."""
    rl_train_levels: str = "id_train"
    """Level split the RL tasks are drawn from (never a test or held-out split)."""
    rl_train_offset: int = 0
    """RL tasks come from levels[rl_train_offset:] of ``rl_train_levels`` (skip the SFT levels if wanted)."""
    rl_max_steps: int = 20
    """Step budget of an RL episode."""
    rl_temperature: float = 1.0
    """Sampling temperature of RL rollouts, > 0."""
    rl_learning_rate: float = 1e-6
    """AdamW learning rate of the policy update (paper's peers: 1e-6 for 7B)."""
    rl_beta: float = 0.001
    """beta, the KL(pi_theta || pi_ref) coefficient, >= 0."""
    rl_clip_epsilon: float = 0.2
    """epsilon, the clip range of the importance ratio, in (0, 1)."""
    rl_mu: int = 1
    """mu, optimiser steps per batch of rollouts (>1 makes the ratio and the clip matter)."""
    rl_micro_batch_size: int = 8
    """Samples per forward/backward pass (gradient accumulation over the batch)."""
    rl_checkpoint_every: int = 5
    """Save a resumable checkpoint every this many iterations (and at the end)."""
    dyna_sim_iterations: int = 1
    """Dyna-GRPO schedule: simulation-improvement iterations per cycle."""
    dyna_policy_iterations: int = 1
    """Dyna-GRPO schedule: policy-improvement iterations per cycle (the cycle repeats)."""

    def __post_init__(self):
        _validate(self)

    @property
    def lora_modules(self) -> tuple[str, ...]:
        """``lora_target_modules`` as a tuple of layer names."""
        return tuple(m.strip() for m in self.lora_target_modules.split(",") if m.strip())


def _validate(preset: Preset) -> None:
    """Type and range checks; ValueError naming the field."""
    hints = get_type_hints(Preset)
    for f in dataclasses.fields(Preset):
        value, expected = getattr(preset, f.name), hints[f.name]
        ok = (isinstance(value, bool) if expected is bool
              else isinstance(value, (int, float)) and not isinstance(value, bool) if expected is float
              else isinstance(value, int) and not isinstance(value, bool) if expected is int
              else isinstance(value, expected))
        if not ok:
            raise ValueError(f"preset field {f.name!r} must be {expected.__name__}, got {value!r}")

    def check(name: str, condition: bool, requirement: str) -> None:
        if not condition:
            raise ValueError(f"preset field {name!r} {requirement}, got {getattr(preset, name)!r}")

    check("model_name_or_path", bool(preset.model_name_or_path), "must name a model")
    check("device", preset.device in DEVICES or preset.device.startswith("cuda:"), f"must be one of {DEVICES}")
    check("dtype", preset.dtype in DTYPES, f"must be one of {DTYPES}")
    check("lora_r", preset.lora_r >= 1, "must be >= 1")
    check("lora_alpha", preset.lora_alpha > 0, "must be > 0")
    check("lora_dropout", 0.0 <= preset.lora_dropout < 1.0, "must be in [0, 1)")
    check("lora_target_modules", bool(preset.lora_modules), "must name at least one layer")
    check("load_in_4bit", not (preset.load_in_4bit and preset.full_finetune),
          "cannot be combined with full_finetune (4-bit weights are trained through LoRA only)")
    check("sft_epochs", preset.sft_epochs > 0, "must be > 0")
    check("sft_learning_rate", preset.sft_learning_rate > 0, "must be > 0")
    check("sft_warmup_ratio", 0.0 <= preset.sft_warmup_ratio < 1.0, "must be in [0, 1)")
    for name in ("sft_batch_size", "sft_grad_accum", "sft_max_seq_len", "sft_save_steps", "sft_logging_steps",
                 "max_new_tokens",
                 "eval_batch_size", "max_steps", "num_resim_levels", "b", "d"):
        check(name, getattr(preset, name) >= 1, "must be >= 1")
    check("sft_max_steps", preset.sft_max_steps == -1 or preset.sft_max_steps >= 1, "must be -1 or >= 1")
    check("generation_backend", preset.generation_backend in BACKENDS, f"must be one of {BACKENDS}")
    check("temperature", 0.0 <= preset.temperature <= 2.0, "must be in [0, 2]")
    check("history_len", preset.history_len >= 0, "must be >= 0")
    check("board_canvas", preset.board_canvas == 0 or preset.board_canvas >= 3, "must be 0 (off) or >= 3")
    check("react_eval_levels", preset.react_eval_levels >= 0, "must be >= 0 (0: all)")
    check("rollout_policy", preset.rollout_policy in ROLLOUT_POLICIES, f"must be one of {ROLLOUT_POLICIES}")
    check("rollout_epsilon", 0.0 <= preset.rollout_epsilon <= 1.0, "must be in [0, 1]")
    check("resim_explore", 0.0 <= preset.resim_explore < 1.0, "must be in [0, 1)")
    check("resim_refine", 0.0 <= preset.resim_refine <= 1.0, "must be in [0, 1]")
    check("resim_rollout_order", preset.resim_rollout_order in ROLLOUT_ORDERS, f"must be one of {ROLLOUT_ORDERS}")
    check("resim_train_levels", bool(preset.resim_train_levels), "must name a level split or file")
    for name in ("rl_iterations", "rl_tasks", "rl_max_steps", "rl_mu", "rl_micro_batch_size", "rl_checkpoint_every"):
        check(name, getattr(preset, name) >= 1, "must be >= 1")
    check("rl_group_size", preset.rl_group_size >= 2 and preset.rl_group_size % 2 == 0, "must be even and >= 2")
    check("rl_train_levels", bool(preset.rl_train_levels), "must name a level split or file")
    check("rl_train_offset", preset.rl_train_offset >= 0, "must be >= 0")
    check("rl_temperature", 0.0 < preset.rl_temperature <= 2.0, "must be in (0, 2]")
    check("rl_learning_rate", preset.rl_learning_rate > 0, "must be > 0")
    check("rl_beta", preset.rl_beta >= 0, "must be >= 0")
    check("rl_clip_epsilon", 0.0 < preset.rl_clip_epsilon < 1.0, "must be in (0, 1)")
    check("dyna_sim_iterations", preset.dyna_sim_iterations >= 0, "must be >= 0")
    check("dyna_policy_iterations", preset.dyna_policy_iterations >= 0, "must be >= 0")
    check("dyna_policy_iterations", preset.dyna_sim_iterations + preset.dyna_policy_iterations >= 1,
          "and dyna_sim_iterations must not both be 0")
    check("value_fn", preset.value_fn in VALUE_FUNCTIONS, f"must be one of {VALUE_FUNCTIONS}")
    check("aggregator", preset.aggregator in AGGREGATORS, f"must be one of {AGGREGATORS}")


def _tiny_base_path() -> str:
    from dynamind_lite.paths import tiny_base_dir

    return str(tiny_base_dir())


_PRESETS = {
    # tiny: a from-scratch ~0.46M-parameter model on a 2-core CPU; every value
    # below was measured (figures in the README and benchmarks/stage1_variants.md):
    # * id_train (6x6, one box, reverse play): within Stage 1's 8-minute budget
    #   this model cannot learn the multi-style mix_train. One epoch of RESIM
    #   data on 1640 mix_train levels gave ID success 0.5% (Sim Score 0.25);
    #   on the 8x8 canvas (board_canvas=8) 27.5% (Sim Score 0.83) after 1582
    #   steps but 0% after 981; the 6x6 part of the mix, 2 epochs: 8.5%.
    #   id_train, 2 epochs (2304 steps): 86.5%, Sim Score 0.79.
    # * resim_explore=0.1: off-path states and blocked moves in the history.
    # * full fine-tuning: LoRA adapters on a 128-wide model train a small
    #   fraction of its weights and learn the grid dynamics far slower; all
    #   ~0.46M weights train at CPU speed anyway. LoRA/QLoRA is the same code
    #   (tests, small and full presets).
    # * d=1: each simulated state is one move from the prompt's current state,
    #   so a response is ~130 tokens; b=2 compares two first moves. d=3 (~290 tokens) solved the
    #   held-out style 18.9% vs 13.5% at the same steps, Sim Score 0.19 vs 0.39 (seeds 0-2; row Q of
    #   benchmarks/stage1_variants.md, where every Stage 1 variant named below is measured).
    # * value_fn="exact" (the default): with d=3 the heuristic V's teacher solves 91.7% of the held-out
    #   style, but its student solved 13.3% (seed 0; exact V, d=3: 20.6%) (row R).
    # * A 2-layer base (width 128, 0.46M) and 2.5 epochs over 1800 levels (3490 steps), each step's 8
    #   random examples sorted by length into 4 micro-batches of 2 (sft_sort_micro_batches; the same
    #   examples and gradient per step as one random batch of 8, padding 4% instead of 29%,
    #   bench_sft.py: 37.2 vs 27.5 examples/s). What lifts every 6x6 split is SFT compute, the number
    #   of examples trained on: the previous preset, the 4-layer base (0.85M) for 1.25 epochs (1745
    #   steps), solved 65.5% of ID and 13.5% of the held-out style over seeds 0-2; 2.5 epochs of it 89.5%
    #   and 22.4% (row L), but SFT took 1245-1326 s on the AVX-512 host; the same examples in 3490 steps
    #   of 4 gave 55.5% and 11.5% (row X: not the updates); five times the distinct levels at 1745 steps
    #   12.4% (row W), at 3490 steps 22.2% (row W2). Two layers of width 128 train 1.8x the examples/s
    #   of four (bench_sft.py, 70.7 vs 39.2), so 2.5 epochs cost 1.1-1.2x the old SFT time: ID 81.8%,
    #   the held-out style 18.7% [17.8, 20.0] at a fixed 3490 steps (row Y, seeds 0-2); this preset,
    #   whose step count follows each seed's data, 78.3% and 16.1% [13.9, 20.0], with Stage 1 in
    #   415-434 s on the AMX host (runs/tiny-1127c). 5 epochs of the 4-layer base (row S, seed 0)
    #   gained nothing more on the held-out style (21.7%); twice the peak learning rate (4e-3) at
    #   1745 steps is no shortcut (ID 27.5%, the held-out style 6.3%, row V). Earlier, with the
    #   4-layer base: 1.25 epochs sorted 59.0 / 69.5 / 68.0% ID at seeds 0-2 against 57.5 / 52.5 /
    #   42.5% for 1 epoch of one random batch of 8, in less SFT time; 1 epoch sorted 58.5 / 26.5 / 13.5%.
    #   The rows named in the other comments here were measured on that 4-layer base.
    #   Batches *drawn* by length train a worse model: grouped by length (sft_group_by_length) the
    #   seed-0 model solved 40% of ID instead of 69%; refine and plain examples in batches of their own
    #   28.0% instead of 57.5%, Sim Score 0.32 instead of 0.61.
    # * rollouts in the search's order (resim_rollout_order="search", the best usually first): the two
    #   rollouts listed by action raised the held-out style's Sim Score to 0.66 (0.39) at the same cost,
    #   but ID fell to 50.5% and the held-out style to 11.7% (seeds 0-2, row M); all four
    #   moves rolled out and listed by action (b=4, "action") doubled the held-out style's Sim Score
    #   (0.39 -> 0.79, seeds 0-2) at the same success (11.9 vs 13.5%) for 1.5x the SFT time (row N);
    #   b=4 in this order 0.65 at 17.4% (row P), inside the seeds' spread. b=4 by action for twice the
    #   steps: Sim Score 0.91 at 20.7% (row O, seeds 0-2), SFT 1781-1955 s on the AVX-512 host: over budget.
    # * the system message stays in the prompt: without it (the tiny tokenizer's chat template
    #   leaving it out) SFT ran 1.2x faster, but the seed-0 model ended at a higher loss (0.041 vs 0.028)
    #   and solved 25.5% of ID instead of 57.5% (Sim Score 0.25 vs 0.61).
    # * sft_fused_lm_head=False: with a vocabulary of 503 tokens the full logits are small, and the
    #   model's own loss runs 15% faster than TRL's chunked LM head (bench_sft.py: 25.8 vs 22.4 examples/s).
    # * react_eval_levels=40: the tiny base's REACT row needs few episodes.
    # * resim_refine=0.2: the tiny policy learns to read SimRollout's refine prompt in Stage 1
    #   (a 7B instruct model reads it without that).
    # * Stage 2: 6 iterations of 8 tasks x G=8 episodes; an RL episode's budget is 12 steps (2.5x the
    #   4-5 moves most id_train levels need): of 64 training episodes of the distilled policy, 2 were
    #   solved after step 12 and 21 ran to step 20 stuck, their last 8 steps a third of the rollout time;
    #   temperature 0.7 (peers use 0.7-1.0; at 1.0 the tiny policy's samples were far noisier:
    #   64 id_train levels, success 53% vs 69%, Sim Score 0.60 vs 0.67);
    #   lr 1e-4 with GRPO's per-episode loss normalisation (tuned on id_val, never a test split).
    "tiny": dict(
        model_name_or_path=_tiny_base_path, device="cpu", dtype="float32", full_finetune=True,
        sft_epochs=2.5, sft_learning_rate=2e-3, sft_warmup_ratio=0.03, sft_batch_size=2, sft_grad_accum=4,
        sft_sort_micro_batches=True, sft_max_seq_len=1024, sft_save_steps=500, sft_fused_lm_head=False,
        max_new_tokens=320, eval_batch_size=200,
        num_resim_levels=1800, resim_train_levels="id_train", resim_refine=0.2, b=2, d=1, react_eval_levels=40,
        rl_iterations=6, rl_tasks=8, rl_group_size=8, rl_max_steps=12, rl_temperature=0.7, rl_learning_rate=1e-4,
        rl_beta=0.001, rl_micro_batch_size=16,
    ),
    # small: free Colab T4 (16 GB, fp16 only).
    "small": dict(
        model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct", dtype="float16", load_in_4bit=True,
        lora_r=16, lora_alpha=32, sft_epochs=2.0, sft_learning_rate=2e-4, sft_batch_size=4, sft_grad_accum=4,
        sft_max_seq_len=2048, max_new_tokens=1024, eval_batch_size=32, num_resim_levels=500, b=2, d=3,
    ),
    # full: the paper's model, several GPUs, vLLM for generation.
    "full": dict(
        model_name_or_path="Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16", lora_r=64, lora_alpha=128,
        sft_epochs=3.0, sft_learning_rate=1e-4, sft_batch_size=4, sft_grad_accum=8, sft_max_seq_len=4096,
        generation_backend="vllm", max_new_tokens=2048, eval_batch_size=128, num_resim_levels=1640, b=3, d=5,
    ),
}
PRESET_NAMES = tuple(_PRESETS)


def get_preset(name: str, **overrides) -> Preset:
    """The preset called ``name`` with flat scalar ``overrides`` by field name.

    Introduced in ``notebooks/04_resim_sft.ipynb``.
    ``get_preset("tiny", sft_learning_rate=1e-3, b=3)``. Raises ValueError
    naming an unknown preset, an unknown field, a wrong type or a bad value.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESET_NAMES}")
    known = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown preset field(s) {unknown}; known fields: {sorted(known)}")
    values = {k: (v() if callable(v) else v) for k, v in _PRESETS[name].items() if k not in overrides}
    return Preset(name=name, **values, **overrides)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["rl_tasks=4", "rl_beta=0.01"]`` -> typed values (JSON when it parses, else the string)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides
