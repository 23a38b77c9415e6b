"""RESIM distillation: supervised fine-tuning on a^ReSim (paper Sec. 3.1, Stage 1).

Introduced in ``notebooks/04_resim_sft.ipynb``. Each SFT example is one
decision of the RESIM agent, ``build_messages(s_t, history, h) + [a^ReSim_t]``;
the policy learns to write the whole search tree (plans, real future states,
values) and its decision from the state alone, with no search at inference::

    L(theta) = - sum_{(x, y) in D} sum_{k} log pi_theta(y_k | x, y_<k)     (1)

with x the chat prompt and y the assistant turn (a^ReSim + ``<|im_end|>``): the
loss covers the assistant tokens only (TRL ``assistant_only_loss``, driven by
the ``{% generation %}`` markers of the chat template).

Where we depart from the paper, and why:

- LoRA adapters by default (QLoRA with 4-bit weights on small GPUs) instead of
  full fine-tuning of a 7B model; ``full_finetune`` switches back (the tiny
  preset uses it: its model is small enough to train whole on a CPU).
- The final model is saved merged (LoRA folded into the weights with
  ``merge_and_unload``) so every later stage loads it with ``load_policy`` like
  any checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Sampler
from transformers import TrainerCallback

from dynamind_lite.config import Preset, get_preset
from dynamind_lite.io import save_pretrained_atomic, write_json_atomic
from dynamind_lite.models.loader import LoraSettings, load_policy
from dynamind_lite.progress import Progress

FINAL_DIR = "final"
"""Sub-directory of ``output_dir`` holding the merged fine-tuned model."""
LOG_FILE = "log_history.json"
"""Trainer log history (loss curve) written to ``output_dir``."""


@dataclass
class SFTResult:
    """What ``run_sft`` produced.

    model_dir: the merged model (``save_pretrained`` dir; load it with ``load_policy``).
    log_history: the Trainer's log entries (``{"step", "loss", "learning_rate", ...}``).
    global_step: optimiser steps done in total (across resumed runs).
    resumed_from: the checkpoint this run continued from, or None.
    num_processes: processes that trained together (2 or more under ``accelerate launch``).
    """

    output_dir: str
    model_dir: str
    log_history: list[dict]
    global_step: int
    resumed_from: str | None
    num_processes: int = 1

    @property
    def losses(self) -> list[tuple[int, float]]:
        """``(step, training loss)`` pairs of the loss curve."""
        return [(e["step"], e["loss"]) for e in self.log_history if "loss" in e]


def plot_loss_curve(log_history: list[dict] | str | os.PathLike, ax=None, label: str = "SFT loss"):
    """Plot training loss against optimiser step (``notebooks/04_resim_sft.ipynb``).

    ``log_history``: ``SFTResult.log_history`` or the path of ``log_history.json``.
    Returns the matplotlib Axes (a new figure's when ``ax`` is None).
    """
    if isinstance(log_history, (str, os.PathLike)):
        log_history = json.loads(Path(log_history).read_text(encoding="utf-8"))
    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    if not points:
        raise ValueError("log history holds no training loss entry")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 3.5))
    steps, losses = zip(*points)
    ax.plot(steps, losses, label=label)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


# --------------------------------------------------------------------------- #
# Plumbing: data, checkpoints, presets
# --------------------------------------------------------------------------- #


def load_sft_dataset(train_file: str | os.PathLike):
    """The a^ReSim SFT JSONL as a ``datasets.Dataset`` with a ``messages`` column.

    Raises ValueError naming the problem (missing file, empty file, a row that
    is not ``{"messages": [system, user, assistant]}``).
    """
    from datasets import load_dataset

    path = Path(train_file)
    if not path.is_file():
        raise ValueError(f"SFT data file {str(path)!r} does not exist")
    examples = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            examples += 1
            try:
                roles = [m["role"] for m in json.loads(line)["messages"]]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a {{'messages': [...]}} row ({error})") from None
            if roles[-1:] != ["assistant"]:
                raise ValueError(f"{path}:{number}: the last message must be the assistant's, got roles {roles}")
    if not examples:  # checked here: datasets' JSON loader fails on an empty file with a bare StopIteration
        raise ValueError(f"SFT data file {str(path)!r} holds no example (did the RESIM agent solve no level?)")
    return load_dataset("json", data_files=str(path), split="train").select_columns(["messages"])


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The highest ``checkpoint-N`` in ``output_dir`` whose save completed.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint cut short by
    an interruption (no state file) is skipped.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None
    complete = [(int(m.group(1)), p) for p in root.iterdir()
                if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()]
    return str(max(complete)[1]) if complete else None


def resolve_preset(preset: Preset | str, overrides: dict) -> Preset:
    """A Preset from a name or an instance, with validated field overrides."""
    if isinstance(preset, str):
        return get_preset(preset, **overrides)
    known = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown preset field(s) {unknown}")
    return dataclasses.replace(preset, **overrides)


def lora_settings(preset: Preset) -> LoraSettings | None:
    """The preset's LoRA adapters, or None for full fine-tuning."""
    if preset.full_finetune:
        return None
    return LoraSettings(r=preset.lora_r, alpha=preset.lora_alpha, dropout=preset.lora_dropout,
                        target_modules=preset.lora_modules)


def merged_model(model, preset: Preset, model_name_or_path: str, device: str | None, scratch_dir: str | os.PathLike):
    """The trained weights as one plain model (LoRA folded in), for ``save_pretrained``.

    Used by SFT (``run_sft``) and RL (``dyna_grpo.train_rl``). Under QLoRA the
    adapters are saved to ``scratch_dir`` and folded into a full-precision copy of
    the base ``model_name_or_path``, so the merged model is not 4-bit."""
    if not hasattr(model, "merge_and_unload"):  # full fine-tuning: already plain
        return model
    if not preset.load_in_4bit:
        return model.merge_and_unload()
    # QLoRA: fold the adapters into a full-precision copy of the base weights.
    from peft import PeftModel

    with tempfile.TemporaryDirectory(dir=scratch_dir) as adapter_dir:
        model.save_pretrained(adapter_dir)
        base, _ = load_policy(model_name_or_path, dtype=preset.dtype, device=device)
        return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()


class SFTProgressCallback(TrainerCallback):
    """One progress bar for SFT with the latest training loss beside it
    (``notebooks/04_resim_sft.ipynb``), plain lines in batch mode (``progress.Progress``).
    It replaces the Trainer's printer, which prints one log dictionary per logging step."""

    def __init__(self):
        self.progress: Progress | None = None
        self.loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(state.max_steps, "SFT", unit="step")
        if state.global_step:  # resumed from a checkpoint
            self.progress.update(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(1, **({"loss": self.loss} if self.loss is not None else {}))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()
            self.progress = None


class LengthSortedStepSampler(Sampler):
    """A random order in which each optimiser step's examples come sorted by length
    (``Preset.sft_sort_micro_batches``; introduced in ``notebooks/04_resim_sft.ipynb``).

    A seeded permutation of the dataset is cut into steps of ``step_size`` =
    batch_size x grad_accum examples, as random batches of that size would be.
    Inside a step the examples are sorted by length, so each of its grad_accum
    micro-batches (consecutive ``batch_size`` indices) pads only to its own
    longest example. A step holds the same examples as before, and its gradient
    is the same: the loss is divided by the number of trained tokens of the
    whole step (the Trainer's ``num_items_in_batch``), not per micro-batch.

    lengths: tokens of each example, [N]. seed: the permutation's seed (+ epoch).
    """

    def __init__(self, lengths: Sequence[int], step_size: int, seed: int):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.lengths, self.step_size, self.seed, self.epoch = list(lengths), step_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()  # [N]
        for start in range(0, len(order), self.step_size):
            yield from sorted(order[start:start + self.step_size], key=self.lengths.__getitem__)


def _sft_trainer_class(preset: Preset):
    """TRL's ``SFTTrainer``, with the model's own loss when ``preset.sft_fused_lm_head`` is False
    (``transformers.Trainer.compute_loss``: the cross-entropy of the full logits over the assistant
    tokens, divided by their number: the same eq. (1) as TRL's chunked LM head without its entropy
    and token-accuracy logs), and ``LengthSortedStepSampler`` when ``preset.sft_sort_micro_batches``."""
    from transformers import Trainer
    from trl import SFTTrainer

    class DynamindSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if preset.sft_fused_lm_head:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

        def _get_train_sampler(self, train_dataset=None):
            if not preset.sft_sort_micro_batches:
                return super()._get_train_sampler(train_dataset)
            dataset = self.train_dataset if train_dataset is None else train_dataset
            step_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
            seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
            return LengthSortedStepSampler([len(ids) for ids in dataset["input_ids"]], step_size, seed)

    return DynamindSFTTrainer


def make_sft_trainer(model_name_or_path: str | os.PathLike, dataset, output_dir: str | os.PathLike, preset: Preset,
                     seed: int = 0, callbacks: list | None = None, assistant_only_loss: bool = True,
                     progress: bool = True):
    """TRL's ``SFTTrainer`` for eq. (1), set up from ``preset`` (plumbing of ``run_sft``;
    ``benchmarks/bench_sft.py`` times it against a plain PyTorch loop on its batches).

    ``dataset``: the ``messages`` dataset of ``load_sft_dataset``. Loads the
    policy (plain, LoRA or 4-bit QLoRA). ``progress``: one bar with the loss
    instead of the Trainer's per-log printout.
    """
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig

    device = None if preset.device == "auto" else preset.device
    # ---- the policy: plain (full fine-tuning), LoRA, or 4-bit QLoRA ------- #
    set_seed(seed)  # adapter initialisation is random
    checkpointing = preset.load_in_4bit and torch.cuda.is_available()  # saves GPU memory; only slows a CPU
    model, tokenizer = load_policy(model_name_or_path, lora=lora_settings(preset), load_in_4bit=preset.load_in_4bit,
                                   dtype=preset.dtype, device=device, gradient_checkpointing=checkpointing)
    model.train()
    on_gpu = next(model.parameters()).device.type == "cuda"
    half = model.dtype if on_gpu else None

    # ---- TRL SFTTrainer with assistant-only loss, eq. (1) ----------------- #
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    # recent transformers renamed gradient_checkpointing (TRL turns it on by default) to activation_checkpointing
    checkpoint_arg = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    args = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=preset.sft_epochs,
        max_steps=preset.sft_max_steps,
        learning_rate=preset.sft_learning_rate,
        warmup_steps=preset.sft_warmup_ratio,  # a float < 1 is a fraction of all steps
        lr_scheduler_type="linear",
        per_device_train_batch_size=preset.sft_batch_size,
        gradient_accumulation_steps=preset.sft_grad_accum,
        max_length=preset.sft_max_seq_len,
        assistant_only_loss=assistant_only_loss,
        # a run shorter than one logging interval still records its loss curve
        logging_steps=min(preset.sft_logging_steps, preset.sft_max_steps if preset.sft_max_steps > 0 else 10 ** 9),
        save_strategy="steps",
        save_steps=preset.sft_save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="group_by_length" if preset.sft_group_by_length else "random",
        report_to="none",
        use_cpu=not on_gpu,
        bf16=half == torch.bfloat16,
        fp16=half == torch.float16,
        dataloader_num_workers=0,
        disable_tqdm=True,  # our own bar (SFTProgressCallback) shows the loss
        **{checkpoint_arg: checkpointing and on_gpu},
    )
    callbacks = list(callbacks or []) + ([SFTProgressCallback()] if progress else [])
    trainer = _sft_trainer_class(preset)(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                         callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # it prints every log dictionary
    return trainer


# =========================================================================== #
# The algorithm: SFT on a^ReSim, eq. (1)
# =========================================================================== #


def run_sft(
    model_name_or_path: str | os.PathLike,
    train_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    preset: Preset | str = "tiny",
    seed: int = 0,
    callbacks: list | None = None,
    assistant_only_loss: bool = True,
    progress: bool = True,
    **overrides,
) -> SFTResult:
    """Fine-tune ``model_name_or_path`` on the RESIM SFT file with TRL's SFTTrainer.

    Introduced in ``notebooks/04_resim_sft.ipynb``.

    Args:
        model_name_or_path: base policy (hub id or directory), loaded by ``load_policy``.
        train_file: SFT JSONL, one ``{"messages": [system, user, assistant]}`` per line.
        output_dir: Trainer checkpoints (``checkpoint-N``), ``log_history.json``
            and the merged model in ``output_dir/final``.
        preset: a Preset or its name; its ``sft_*``, ``lora_*``, ``full_finetune``,
            ``load_in_4bit``, ``device`` and ``dtype`` fields drive the run.
        seed: seeds data order, dropout and adapter initialisation.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        assistant_only_loss: eq. (1) on the assistant turn only (RESIM SFT);
            False trains on whole sequences (the tiny base model's pre-training).
        progress: show one progress bar with the loss (plain lines in batch mode).
        **overrides: preset fields to override, e.g. ``sft_max_steps=20``.

    A run that finds a completed checkpoint in ``output_dir`` resumes from it
    (optimizer, scheduler, RNG and data position included), so an interrupted
    run continues where it stopped when started again with the same arguments.
    """
    # ---- validate everything before loading anything heavy ---------------- #
    preset = resolve_preset(preset, overrides)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    dataset = load_sft_dataset(train_file)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = None if preset.device == "auto" else preset.device

    trainer = make_sft_trainer(model_name_or_path, dataset, output_dir, preset, seed, callbacks,
                               assistant_only_loss, progress)
    resumed_from = latest_checkpoint(output_dir)
    trainer.train(resume_from_checkpoint=resumed_from)

    # ---- save: merged model + loss curve (atomic; one process under accelerate launch) ---- #
    model_dir = output_dir / FINAL_DIR
    log_history = list(trainer.state.log_history)
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        merged = merged_model(model, preset, str(model_name_or_path), device, output_dir)
        save_pretrained_atomic(merged, trainer.processing_class, model_dir)
        write_json_atomic(output_dir / LOG_FILE, log_history)
    trainer.accelerator.wait_for_everyone()
    return SFTResult(output_dir=str(output_dir), model_dir=str(model_dir), log_history=log_history,
                     global_step=trainer.state.global_step, resumed_from=resumed_from,
                     num_processes=trainer.accelerator.num_processes)


# =========================================================================== #
# Command line: python -m dynamind_lite sft ...
# =========================================================================== #


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dynamind_lite sft --model DIR --data FILE --out DIR``: RESIM
    distillation SFT (``run_sft``) from the command line, the same under
    ``accelerate launch`` (TRL's trainer shards the batches over the processes).
    0 on success, 2 on a bad argument (checked before loading anything)."""
    import argparse
    import sys

    from dynamind_lite.config import parse_overrides

    parser = argparse.ArgumentParser(prog="python -m dynamind_lite sft",
                                     description="Distil a^ReSim responses into a policy with TRL's SFTTrainer.")
    parser.add_argument("--model", required=True, help="base policy: hub id or save_pretrained folder")
    parser.add_argument("--data", required=True, help="SFT JSONL of notebook 03 / python -m dynamind_lite resim")
    parser.add_argument("--out", required=True, help="output folder: checkpoints, log_history.json, final/")
    parser.add_argument("--preset", default="tiny", help="tiny | small | full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a preset field, e.g. --set sft_max_steps=20 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        preset = resolve_preset(args.preset, parse_overrides(args.set))
        load_sft_dataset(args.data)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = run_sft(args.model, args.data, args.out, preset, seed=args.seed, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"model_dir": result.model_dir, "global_step": result.global_step,
                          "num_processes": result.num_processes,
                          "first_loss": result.losses[0][1] if result.losses else None,
                          "last_loss": result.losses[-1][1] if result.losses else None}, indent=2))
    return 0
