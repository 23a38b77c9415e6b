"""What a run needs: memory per GPU and time per stage, from the model's size.

Introduced in ``notebooks/07_results.ipynb``'s road to full scale and printed by
``python -m dynamind_lite pipeline --preset small|full --dry-run``; the README's
presets table carries the same figures.

Per stage (bytes, per GPU; N parameters, h hidden, L layers, V vocabulary,
n_kv key/value heads of size d_head, B sequences of S tokens)::

    weights      N * bytes(dtype)             4-bit NF4: 0.53 B for linear weights (block scales
                                              included); embeddings stay in the compute dtype
    training     LoRA: trainable * (4 weight + 4 grad + 8 AdamW m, v)
                 full: N * 16 / GPUs          (bf16 weight + fp32 master, grad, m, v; ZeRO-3 shards)
    activations  B * S * (2 h L + 34 h) * 2   gradient checkpointing: one h-vector per layer kept,
                                              one layer recomputed (Korthikanti et al., 2022)
                 + B * S * V * 8              logits in bf16 and fp32 for the loss, plus their grad
    KV cache     2 * L * n_kv * d_head * 2 B * sequences * (prompt + new tokens)

Time: training FLOPs = k N tokens (k = 8 full fine-tuning, 6 LoRA, with recomputation)
at ``mfu`` of the GPU's peak; decoding is bound by reading the weights once per
step: steps * weight bytes / bandwidth, or its FLOPs, whichever is larger.

Where we depart from a careful profile, and why: these are planning figures,
good to a factor of about 1.5 (allocator fragmentation, CUDA context ~0.5 GiB,
vLLM's own reservation via ``gpu_memory_utilization`` are not modelled). The
token counts per stage come from the preset (levels, steps, response lengths
of the tiny runs scaled by b and d) and are the biggest uncertainty; the tiny
preset's times are the ones measured on a 2-core CPU instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from dynamind_lite.config import Preset

GIB = 1024 ** 3


@dataclass(frozen=True)
class ModelShape:
    """A decoder's size: the Qwen2 config fields the estimates need."""

    hidden: int
    """h, the residual width (896 for Qwen2.5-0.5B, 3584 for 7B)."""
    intermediate: int
    """MLP width (4864 for 0.5B, 18944 for 7B)."""
    layers: int
    """L, decoder layers (24 to 28)."""
    heads: int
    """Query heads; d_head = h / heads."""
    kv_heads: int
    """n_kv, key/value heads (grouped-query attention: 2 to 4 for Qwen2.5)."""
    vocab: int
    """V, vocabulary size (151936; 503 for the tiny domain tokenizer)."""
    tied: bool
    """Input embedding and LM head share one matrix."""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def linear_params(self) -> int:
        """Weights of the decoder layers' linear maps (what 4-bit quantises and LoRA adapts)."""
        kv = self.kv_heads * self.head_dim
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * kv  # q, o; k, v
        return self.layers * (attention + 3 * self.hidden * self.intermediate)  # + gate, up, down

    @property
    def params(self) -> int:
        """N: every parameter (Qwen2's q, k, v biases and the RMSNorm weights included)."""
        kv = self.kv_heads * self.head_dim
        per_layer_small = self.hidden + 2 * kv + 2 * self.hidden  # biases, two norms
        return self.embedding_params + self.linear_params + self.layers * per_layer_small + self.hidden

    def lora_params(self, rank: int) -> int:
        """Trainable LoRA weights with rank r on every linear map: r (d_in + d_out) each."""
        kv = self.kv_heads * self.head_dim
        per_layer = (2 * (self.hidden + self.hidden) + 2 * (self.hidden + kv)
                     + 3 * (self.hidden + self.intermediate))
        return self.layers * rank * per_layer

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        return cls(hidden=config["hidden_size"], intermediate=config["intermediate_size"],
                   layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
                   kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                   vocab=config["vocab_size"], tied=bool(config.get("tie_word_embeddings", False)))


KNOWN_SHAPES = {
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(896, 4864, 24, 14, 2, 151936, True),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelShape(1536, 8960, 28, 12, 2, 151936, True),
    "Qwen/Qwen2.5-3B-Instruct": ModelShape(2048, 11008, 36, 16, 2, 151936, True),
    "Qwen/Qwen2.5-7B-Instruct": ModelShape(3584, 18944, 28, 28, 4, 152064, False),
}
"""The Qwen2.5 instruct models' published configs (no hub access needed for a dry run)."""


def model_shape(name_or_path: str) -> ModelShape:
    """The shape of a ``save_pretrained`` folder (its config.json) or a known hub id;
    ValueError naming the model otherwise."""
    config_file = Path(name_or_path) / "config.json"
    if config_file.is_file():
        return ModelShape.from_config(json.loads(config_file.read_text()))
    if name_or_path in KNOWN_SHAPES:
        return KNOWN_SHAPES[name_or_path]
    raise ValueError(f"model {name_or_path!r}: not a folder with config.json, and not one of the known hub ids "
                     f"{sorted(KNOWN_SHAPES)}; pass a local model folder to estimate its needs")


@dataclass(frozen=True)
class GPUKind:
    """A GPU kind the plan is made for."""

    name: str
    memory_gib: float
    peak_tflops: float
    """Dense 16-bit tensor-core peak (fp16 on a T4, bf16 on A100/H100)."""
    bandwidth_gbs: float
    """Memory bandwidth, GB/s."""


GPU_KINDS = {
    "t4": GPUKind("NVIDIA T4 (free Colab)", 15.0, 65.0, 320.0),
    "a100": GPUKind("NVIDIA A100 80GB", 80.0, 312.0, 2039.0),
    "h100": GPUKind("NVIDIA H100 80GB", 80.0, 989.0, 3350.0),
}
PRESET_HARDWARE = {"small": ("t4", 1), "full": ("h100", 8)}
"""The hardware each GPU preset is planned for: (gpu_kind, number of GPUs)."""
MFU = 0.35
"""Model FLOPs utilisation assumed for training and prefill."""
QLORA_SLOWDOWN = 1.5
"""4-bit weights are dequantised at every matmul: QLoRA trains about this much slower than LoRA."""


@dataclass(frozen=True)
class StageEstimate:
    """One stage of a run: peak memory per GPU (GiB, by part) and time (seconds)."""

    stage: str
    memory_gib: dict[str, float]
    seconds: float

    @property
    def total_gib(self) -> float:
        return sum(self.memory_gib.values())


def _dtype_bytes(preset: Preset) -> int:
    return 4 if preset.dtype == "float32" else 2


def _weight_bytes(shape: ModelShape, preset: Preset) -> float:
    if preset.load_in_4bit:
        return shape.linear_params * 0.53 + (shape.params - shape.linear_params) * _dtype_bytes(preset)
    return shape.params * _dtype_bytes(preset)


def _activation_bytes(shape: ModelShape, sequences: int, tokens: int) -> float:
    kept = sequences * tokens * shape.hidden * 2 * (shape.layers + 17)  # 2 h L + 34 h, 2 bytes each
    logits = sequences * tokens * shape.vocab * 8
    return kept + logits


def _kv_cache_bytes(shape: ModelShape, sequences: int, tokens: int) -> float:
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * 2 * sequences * tokens


def stage_estimates(preset: Preset, shape: ModelShape, gpus: int, gpu_kind: GPUKind,
                    sft_examples: int, prompt_tokens: int, response_tokens: int) -> list[StageEstimate]:
    """Memory per GPU and time of SFT, RL (per method) and evaluation for ``preset``.

    ``sft_examples``: rows of the RESIM data; ``prompt_tokens``/``response_tokens``:
    typical lengths of one step's prompt and a^ReSim in the model's tokenizer."""
    weights = _weight_bytes(shape, preset)
    trainable = shape.params if preset.full_finetune else shape.lora_params(preset.lora_r)
    training_state = (shape.params * 16 / gpus if preset.full_finetune else trainable * 16)
    if preset.full_finetune:
        weights = 0.0  # the bf16 copy is inside the 16 bytes per parameter
    flops_per_token = (8 if preset.full_finetune else 6) * shape.params
    throughput = gpus * gpu_kind.peak_tflops * 1e12 * MFU / (QLORA_SLOWDOWN if preset.load_in_4bit else 1.0)
    sequence = min(preset.sft_max_seq_len, prompt_tokens + response_tokens)

    def decode_seconds(episodes: int, steps: int) -> float:
        batches = math.ceil(episodes / max(1, preset.eval_batch_size * gpus))
        memory_bound = batches * steps * response_tokens * _weight_bytes(shape, preset) / (gpu_kind.bandwidth_gbs * 1e9)
        compute_bound = 2 * shape.params * episodes * steps * (prompt_tokens + response_tokens) / throughput
        return max(memory_bound, compute_bound)

    sft_tokens = sft_examples * sequence * preset.sft_epochs
    sft = StageEstimate("SFT (notebook 04)", {
        "weights": weights / GIB, "optimizer+grads": training_state / GIB,
        "activations": _activation_bytes(shape, preset.sft_batch_size, sequence) / GIB,
    }, flops_per_token * sft_tokens / throughput)

    episodes = preset.rl_iterations * preset.rl_tasks * preset.rl_group_size
    rl_steps = max(1, preset.rl_max_steps // 2)  # episodes end early when solved
    reference = shape.params * _dtype_bytes(preset) / gpus if preset.full_finetune else 0.0
    rl_kv = _kv_cache_bytes(shape, min(preset.eval_batch_size, preset.rl_tasks * preset.rl_group_size), sequence)
    rl = StageEstimate("RL per method (notebook 06)", {
        "weights": weights / GIB, "optimizer+grads": training_state / GIB, "reference policy": reference / GIB,
        "activations": _activation_bytes(shape, preset.rl_micro_batch_size, sequence) / GIB,
        "KV cache": rl_kv / GIB,
    }, decode_seconds(episodes, rl_steps) + flops_per_token * episodes * rl_steps * sequence * preset.rl_mu
        / throughput)

    eval_episodes = 5 * 300  # five models x the ID and OOD test levels
    evaluation = StageEstimate("evaluation (notebooks 04, 06)", {
        "weights": _weight_bytes(shape, preset) / GIB,
        "KV cache": _kv_cache_bytes(shape, preset.eval_batch_size, sequence) / GIB,
    }, decode_seconds(eval_episodes, preset.max_steps // 2))
    return [sft, rl, evaluation]


TINY_MEASURED_SECONDS = {"01_mdp_sokoban": 3, "02_dfs_search_tree": 2, "03_resim_aggregation": 16,
                         "04_resim_sft": 410, "05_simrollout": 22, "06_dyna_grpo": 215, "07_results": 4}
"""Seconds per notebook of the tiny preset (seed 0, ``python -m dynamind_lite pipeline --preset tiny``),
measured on a 2-core Xeon with AMX (``runs/tiny-1127c``). Smoke runs take about a minute each."""

TINY_SLOWEST_HOST_FACTOR = 2.3
"""How much longer the slowest 2-core host measured (a Xeon with AVX-512 and no AMX) took for the
same tiny work: 1933 s against 831 s for notebooks 01-06 of the previous tiny preset
(``runs/tiny-1126h`` against ``runs/tiny-1126g``). The plan prints both ends."""


def workload(preset: Preset) -> tuple[int, int, int]:
    """(SFT examples, prompt tokens, response tokens) a preset's run makes, from the
    tiny runs scaled by the preset: about 5 decisions per level plus refine rows, a
    prompt of two grids, and an a^ReSim of b rollouts of d states of ~40 Qwen tokens."""
    examples = int(preset.num_resim_levels * 5 * (1 + preset.resim_refine))
    prompt_tokens = 250 + 40 * (preset.history_len + 1)
    response_tokens = min(preset.max_new_tokens, 60 + preset.b * (20 + preset.d * 45))
    return examples, prompt_tokens, response_tokens


def gpu_notebook_seconds(preset_name: str) -> dict[str, float]:
    """Estimated seconds per notebook of a GPU preset on its planned hardware
    (``PRESET_HARDWARE``): 04 = SFT + half the evaluation, 06 = two RL runs + the
    other half; the CPU notebooks (01-03, 07) and SimRollout's statistics (05) are
    small next to them."""
    from dynamind_lite.config import get_preset

    preset = get_preset(preset_name)
    kind, gpus = PRESET_HARDWARE[preset_name]
    sft, rl, evaluation = stage_estimates(preset, model_shape(preset.model_name_or_path), gpus, GPU_KINDS[kind],
                                          *workload(preset))
    return {"01_mdp_sokoban": 10.0, "02_dfs_search_tree": 10.0, "03_resim_aggregation": 60.0 + 0.1 * preset.num_resim_levels,
            "04_resim_sft": sft.seconds + evaluation.seconds / 2, "05_simrollout": evaluation.seconds / 5,
            "06_dyna_grpo": 2 * rl.seconds + evaluation.seconds / 2, "07_results": 60.0}
