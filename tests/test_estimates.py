"""Memory and time estimates (``pipeline --dry-run``): the size formulas against real models."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from dynamind_lite.config import get_preset
from dynamind_lite.estimates import (GPU_KINDS, KNOWN_SHAPES, PRESET_HARDWARE, ModelShape, gpu_notebook_seconds,
                                     model_shape, stage_estimates, workload)
from dynamind_lite.paths import tiny_base_dir


def _config(shape: ModelShape) -> Qwen2Config:
    return Qwen2Config(hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
                       num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab,
                       tie_word_embeddings=shape.tied)


@pytest.mark.parametrize("name", sorted(KNOWN_SHAPES))
def test_parameter_count_matches_the_real_architecture(name):
    shape = KNOWN_SHAPES[name]
    with torch.device("meta"):  # no memory, no download: the architecture only
        model = Qwen2ForCausalLM(_config(shape))
    assert shape.params == sum(p.numel() for p in model.parameters())


def test_local_folder_shape_counts_the_tiny_model_exactly():
    from dynamind_lite.models import load_policy

    model, _ = load_policy(str(tiny_base_dir()), device="cpu")
    assert model_shape(str(tiny_base_dir())).params == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="not a folder with config.json"):
        model_shape("someone/unknown-model")


def test_lora_parameter_count_matches_peft():
    shape = ModelShape(hidden=64, intermediate=160, layers=3, heads=4, kv_heads=2, vocab=100, tied=True)
    model = Qwen2ForCausalLM(_config(shape))
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=modules))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.lora_params(8) == trainable


def test_estimates_grow_with_the_model_and_fit_the_planned_gpus():
    for name in ("small", "full"):
        preset = get_preset(name)
        kind, gpus = PRESET_HARDWARE[name]
        stages = stage_estimates(preset, model_shape(preset.model_name_or_path), gpus, GPU_KINDS[kind],
                                 *workload(preset))
        assert [s.stage.split()[0] for s in stages] == ["SFT", "RL", "evaluation"]
        assert all(0 < s.total_gib < GPU_KINDS[kind].memory_gib and s.seconds > 0 for s in stages)
        assert set(gpu_notebook_seconds(name)) >= {"04_resim_sft", "06_dyna_grpo", "07_results"}
    small, full = (stage_estimates(get_preset(n), model_shape(get_preset(n).model_name_or_path), 1, GPU_KINDS["h100"],
                                   *workload(get_preset(n))) for n in ("small", "full"))
    assert full[0].memory_gib["weights"] > 10 * small[0].memory_gib["weights"]  # 7.6 B bf16 vs 0.5 B in 4 bits
