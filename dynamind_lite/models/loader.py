"""One loader for every policy model: hub name or local directory, LoRA, QLoRA.

Introduced in ``notebooks/04_resim_sft.ipynb``. ``load_policy`` loads
``Qwen/Qwen2.5-7B-Instruct`` (full preset), ``Qwen/Qwen2.5-0.5B-Instruct``
(small preset) and the shipped tiny base model ``data/models/tiny-base`` (tiny
preset) through the very same ``from_pretrained`` calls, so what the tests
check on a local checkpoint is what runs on the hub models.

Departure from the paper: the paper fine-tunes Qwen2.5-7B-Instruct; here LoRA
(and 4-bit QLoRA on small GPUs) is a switch, so that the small preset fits a
free Colab T4. Which layers LoRA adapts is a parameter (``LoraSettings``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

QWEN2_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a Qwen2 decoder block (the usual LoRA targets)."""


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters W + (alpha / r) * B A on ``target_modules`` (Hu et al., 2021).

    Introduced in ``notebooks/04_resim_sft.ipynb``.
    """

    r: int = 16
    """Rank r of the update B A (B: [d_out, r], A: [r, d_in]); typical 8-64."""
    alpha: int = 32
    """Scale alpha; the update is multiplied by alpha / r (typical alpha = 2 r)."""
    dropout: float = 0.05
    """Dropout on the adapter input, in [0, 1)."""
    target_modules: tuple[str, ...] = field(default=QWEN2_LINEAR_LAYERS)
    """Names of the linear layers that get adapters."""

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be an integer >= 1, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise ValueError("LoRA target_modules must name at least one layer")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def to_peft_config(self):
        """The equivalent ``peft.LoraConfig`` for a causal LM."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """``None`` -> float32 on CPU, bfloat16 on a GPU that supports it, else float16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or 'auto'")
    return names[dtype]


def _looks_like_local_path(name_or_path: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else is meant as a directory."""
    return (os.path.isabs(name_or_path) or name_or_path.startswith((".", "~"))
            or name_or_path.count("/") > 1 or os.sep != "/" and os.sep in name_or_path)


def check_model_source(name_or_path: str | os.PathLike) -> str:
    """Return ``name_or_path`` as a string after checking it can name a model.

    A path that looks local must be a directory holding ``config.json``; a
    hub id is returned as is (``from_pretrained`` resolves it, from the cache
    when ``HF_HUB_OFFLINE=1``). Raises FileNotFoundError naming the problem.
    """
    name = os.fspath(name_or_path)
    if not name:
        raise ValueError("model name_or_path is empty")
    path = Path(name).expanduser()
    if path.exists() or _looks_like_local_path(name):
        if not path.is_dir():
            raise FileNotFoundError(f"model directory {name!r} does not exist")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model directory {name!r} has no config.json (not a save_pretrained dir)")
        return str(path)
    return name


def load_policy(
    name_or_path: str | os.PathLike,
    lora: LoraSettings | None = None,
    load_in_4bit: bool = False,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    gradient_checkpointing: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM policy and its tokenizer, hub name or local directory alike.

    Introduced in ``notebooks/04_resim_sft.ipynb``.

    Args:
        name_or_path: a hub id (``"Qwen/Qwen2.5-7B-Instruct"``) or a
            ``save_pretrained`` directory (``data/models/tiny-base``).
        lora: wrap the model in PEFT LoRA adapters with these settings
            (trainable adapters, frozen base); ``None`` keeps the plain model.
        load_in_4bit: quantise the weights to 4-bit NF4 with bitsandbytes; with
            ``lora`` this is QLoRA (the model is prepared for k-bit training),
            without it a memory-light model for generation.
        dtype: compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"``,
            a ``torch.dtype``, or ``None``/``"auto"``: float32 on CPU, bf16/fp16 on GPU).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks a GPU if any.
        gradient_checkpointing: trade compute for memory in QLoRA training.

    Returns:
        ``(model, tokenizer)``; the tokenizer pads on the left (batched
        generation) and has a pad token; the model is in eval mode.

    Raises:
        FileNotFoundError: a local directory that does not exist or is not a
            checkpoint. OSError: a hub id that is neither cached nor
            downloadable (e.g. offline), with the name in the message.
    """
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    source = check_model_source(name_or_path)
    model_kwargs: dict = {"dtype": torch_dtype}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_use_double_quant=True,
        )
        model_kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except OSError as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: only cached hub models load)" if offline else ""
        raise OSError(f"cannot load model {source!r}: not a local checkpoint and not available "
                      f"from the Hugging Face hub{hint}: {error}") from error
    if not load_in_4bit:
        model.to(device)
    elif device == "cpu":
        # bitsandbytes repacks 4-bit weights for fast CPU inference at the first eval-mode forward
        # and cannot train on the repacked layout afterwards; RL generates, then trains, the same model.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    if lora is not None:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if load_in_4bit:  # QLoRA: fp32 norms, input grads for the frozen 4-bit trunk
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        elif gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model = get_peft_model(model, lora.to_peft_config())
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.eval()
    return model, tokenizer
