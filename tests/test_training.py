"""RESIM distillation SFT with TRL: full, LoRA and QLoRA runs, resume, merged save."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from dynamind_lite.config import get_preset
from dynamind_lite.models import load_policy
from dynamind_lite.prompts import build_messages
from dynamind_lite.response import ACTIONS, format_response, format_rollout
from dynamind_lite.training import LOG_FILE, latest_checkpoint, load_sft_dataset, plot_loss_curve, run_sft

GRIDS = ["######\n#_XP_#\n#_O__#\n######", "######\n#P_X_#\n#__O_#\n######", "#####\n#PXO#\n#####"]
FAST = dict(sft_batch_size=4, sft_grad_accum=1, sft_warmup_ratio=0.0, sft_save_steps=1000, sft_logging_steps=1,
            device="cpu")


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> str:
    """32 a^ReSim-shaped examples: the assistant turn is a rollout block and its answer."""
    path = tmp_path_factory.mktemp("sft") / "train.jsonl"
    rows = []
    for i in range(32):
        grid, action = GRIDS[i % len(GRIDS)], ACTIONS[i % len(ACTIONS)]
        think = format_rollout(1, [action], [grid], 9.6) + f"\nPlan: {action}"
        rows.append({"messages": build_messages(grid) + [{"role": "assistant",
                                                          "content": format_response(think, action)}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _weights(path: str) -> dict[str, torch.Tensor]:
    model, _ = load_policy(path, device="cpu")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _first_last_loss(result) -> tuple[float, float]:
    losses = [loss for _, loss in result.losses]
    return losses[0], sum(losses[-3:]) / 3


def test_full_finetune_smoke_loss_falls_and_weights_change(tiny_checkpoint, sft_file, tmp_path):
    torch.set_num_threads(1)
    result = run_sft(tiny_checkpoint, sft_file, tmp_path / "full", full_finetune=True, sft_max_steps=12,
                     sft_learning_rate=1e-2, **FAST)
    first, last = _first_last_loss(result)
    assert last < first - 0.5, result.losses
    before, after = _weights(tiny_checkpoint), _weights(result.model_dir)
    assert before.keys() == after.keys()
    assert all(not torch.equal(before[k], after[k]) for k in before if "norm" not in k)
    assert json.loads((tmp_path / "full" / LOG_FILE).read_text()) == result.log_history


def test_lora_sft_merges_into_a_loadable_model(tiny_checkpoint, sft_file, tmp_path):
    result = run_sft(tiny_checkpoint, sft_file, tmp_path / "lora", full_finetune=False, lora_r=8, lora_alpha=16,
                     lora_dropout=0.0, sft_max_steps=12, sft_learning_rate=2e-2, **FAST)
    first, last = _first_last_loss(result)
    assert last < first, result.losses
    before, after = _weights(tiny_checkpoint), _weights(result.model_dir)
    assert before.keys() == after.keys()  # merged: plain Qwen2 weights, no adapters left
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj")) for k in changed)


class _Record4bit(TrainerCallback):
    """Records which linear layers the trained model holds (bitsandbytes 4-bit or not)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import bitsandbytes as bnb

        self.kinds = {type(m) for m in model.modules() if isinstance(m, torch.nn.Linear)}
        self.has_4bit = any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_qlora_4bit_sft_runs(checkpoint64, sft_file, tmp_path):
    record = _Record4bit()
    result = run_sft(checkpoint64, sft_file, tmp_path / "qlora", load_in_4bit=True, full_finetune=False, lora_r=8,
                     lora_alpha=16, lora_dropout=0.0, sft_max_steps=6, sft_learning_rate=2e-2, callbacks=[record],
                     **FAST)
    assert record.has_4bit, record.kinds  # the frozen trunk really was 4-bit NF4
    assert result.global_step == 6
    first, last = _first_last_loss(result)
    assert last < first, result.losses
    model, _ = load_policy(result.model_dir, device="cpu")  # merged into full-precision weights
    assert model.dtype == torch.float32 and not getattr(model, "is_loaded_in_4bit", False)


def test_trl_assistant_only_loss_trains_on_exactly_the_response(tiny_checkpoint, sft_file, tmp_path):
    """TRL's assistant_only_loss reads the chat template's {% generation %} markers:
    the tokens it trains on decode to the assistant turn and nothing else."""
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_policy(tiny_checkpoint, device="cpu")
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to="none", use_cpu=True,
                     max_steps=1, gradient_checkpointing=False)
    dataset = load_sft_dataset(sft_file)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    for i in range(4):
        batch = trainer.data_collator([trainer.train_dataset[i]])  # what the loss sees: labels, -100 = ignored
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        trained = [t for t, label in zip(ids, labels) if label != -100]
        assert tokenizer.decode(trained) == dataset[i]["messages"][-1]["content"] + "<|im_end|>"
        assert len(trained) < len(ids) / 2  # the prompt is not trained on


def test_loss_curve_plot_reads_the_saved_log(tiny_checkpoint, sft_file, tmp_path):
    result = run_sft(tiny_checkpoint, sft_file, tmp_path, full_finetune=True, sft_max_steps=3, **FAST)
    ax = plot_loss_curve(tmp_path / LOG_FILE)
    xs, ys = ax.lines[0].get_data()
    assert list(zip(xs, ys)) == result.losses
    with pytest.raises(ValueError, match="no training loss"):
        plot_loss_curve([{"step": 1, "learning_rate": 0.1}])


class _Interrupt(TrainerCallback):
    """Stops the process-level run after ``at_step`` optimiser steps, like a kill."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step:
            raise KeyboardInterrupt(f"interrupted at step {state.global_step}")


def test_interrupted_run_resumes_from_its_last_checkpoint(tiny_checkpoint, sft_file, tmp_path):
    settings = dict(full_finetune=True, sft_max_steps=6, sft_learning_rate=1e-2, **{**FAST, "sft_save_steps": 2})
    with pytest.raises(KeyboardInterrupt):
        run_sft(tiny_checkpoint, sft_file, tmp_path, callbacks=[_Interrupt(5)], **settings)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-4")
    assert not (tmp_path / "final").exists()
    result = run_sft(tiny_checkpoint, sft_file, tmp_path, **settings)
    assert result.resumed_from.endswith("checkpoint-4")
    assert result.global_step == 6
    assert [step for step, _ in result.losses] == [1, 2, 3, 4, 5, 6]  # steps 1-4 from the checkpoint's state
    uninterrupted = run_sft(tiny_checkpoint, sft_file, tmp_path / "straight", **settings)
    resumed_steps, resumed_losses = zip(*result.losses)
    straight_steps, straight_losses = zip(*uninterrupted.losses)
    assert resumed_steps == straight_steps
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-4)


def test_bad_inputs_fail_before_any_training(tiny_checkpoint, sft_file, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        run_sft(tiny_checkpoint, tmp_path / "missing.jsonl", tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no messages"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        run_sft(tiny_checkpoint, bad, tmp_path / "out")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")  # e.g. a RESIM agent that solved no level
    with pytest.raises(ValueError, match="holds no example"):
        run_sft(tiny_checkpoint, empty, tmp_path / "out")
    with pytest.raises(ValueError, match="sft_learning_rate"):
        run_sft(tiny_checkpoint, sft_file, tmp_path / "out", sft_learning_rate=0.0)
    with pytest.raises(ValueError, match="no_such_field"):
        run_sft(tiny_checkpoint, sft_file, tmp_path / "out", preset=get_preset("tiny"), no_such_field=1)
    assert not (tmp_path / "out").exists()


def test_full_logits_loss_equals_trls_fused_lm_head_loss(tiny_checkpoint, tmp_path):
    """sft_fused_lm_head=False computes the same eq. (1) as TRL's chunked LM head: on the same
    batch, the same loss and the same gradients (float tolerance); the tiny preset uses it."""
    import torch

    from dynamind_lite.training import make_sft_trainer, resolve_preset

    assert get_preset("tiny").sft_fused_lm_head is False and get_preset("full").sft_fused_lm_head is True
    rows = [{"messages": build_messages(grid, [], 1) + [
        {"role": "assistant", "content": format_response(f"Plan: {action}", action)}]}
        for grid, action in zip(GRIDS * 4, ACTIONS * 4)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def loss_and_grads(fused: bool):
        preset = resolve_preset(get_preset("tiny"), dict(FAST, model_name_or_path=tiny_checkpoint,
                                                         sft_fused_lm_head=fused, sft_max_steps=1))
        trainer = make_sft_trainer(tiny_checkpoint, load_sft_dataset(str(data)), tmp_path / str(fused), preset,
                                   progress=False)
        batch = next(iter(trainer.get_train_dataloader()))
        num_items = int((batch["labels"][:, 1:] != -100).sum())  # trained tokens after the shift
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=torch.tensor(num_items))
        loss.backward()
        return loss.item(), [p.grad.clone() for p in trainer.model.parameters()]

    fused_loss, fused_grads = loss_and_grads(True)
    full_loss, full_grads = loss_and_grads(False)
    assert full_loss == pytest.approx(fused_loss, rel=1e-5)
    for fused_grad, full_grad in zip(fused_grads, full_grads):
        torch.testing.assert_close(full_grad, fused_grad, rtol=1e-4, atol=1e-6)


def _mixed_length_file(tmp_path) -> str:
    """64 examples, half with short prompts, half with long ones (a history of 6 past states),
    with responses (trained tokens) of 1 to 5 planned moves."""
    rows = []
    for i in range(64):
        grid, action = GRIDS[i % len(GRIDS)], ACTIONS[i % len(ACTIONS)]
        history = [(grid, action)] * (6 if i % 2 else 0)
        plan = " ".join([action] * (1 + i % 5))
        rows.append({"messages": build_messages(grid, history, 6) + [
            {"role": "assistant", "content": format_response(f"Plan: {plan}", action)}]})
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(data)


def test_group_by_length_batches_have_less_padding(tiny_checkpoint, tmp_path):
    """sft_group_by_length reaches the Trainer: with examples of two very different lengths,
    its batches pad less than random ones (the same data, the same seed)."""
    from dynamind_lite.training import make_sft_trainer, resolve_preset

    data = _mixed_length_file(tmp_path)

    def padding_share(grouped: bool) -> float:
        preset = resolve_preset(get_preset("tiny"), dict(FAST, model_name_or_path=tiny_checkpoint,
                                                         sft_group_by_length=grouped, sft_max_steps=8,
                                                         sft_sort_micro_batches=False))
        trainer = make_sft_trainer(tiny_checkpoint, load_sft_dataset(data), tmp_path / str(grouped), preset,
                                   progress=False)
        assert trainer.args.train_sampling_strategy == ("group_by_length" if grouped else "random")
        batches = list(trainer.get_train_dataloader())
        return 1 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["input_ids"].numel() for b in batches)

    random_share, grouped_share = padding_share(False), padding_share(True)
    assert grouped_share < random_share / 2, (random_share, grouped_share)


def test_length_sorted_step_sampler_sorts_each_random_step():
    from dynamind_lite.training import LengthSortedStepSampler

    lengths = [(7 * i * i) % 97 for i in range(30)]
    sampler = LengthSortedStepSampler(lengths, step_size=8, seed=5)
    order = list(sampler)
    assert sorted(order) == list(range(30)) and len(sampler) == 30
    steps = [order[i:i + 8] for i in range(0, 30, 8)]
    permutation = torch.randperm(30, generator=torch.Generator().manual_seed(5)).tolist()
    assert [set(step) for step in steps] == [set(permutation[i:i + 8]) for i in range(0, 30, 8)]
    assert all([lengths[i] for i in step] == sorted(lengths[i] for i in step) for step in steps)
    assert list(sampler) == order  # the same order for the same seed and epoch
    sampler.set_epoch(1)
    assert list(sampler) != order
    with pytest.raises(ValueError, match="step_size"):
        LengthSortedStepSampler(lengths, step_size=0, seed=0)


def test_sorted_micro_batches_pad_less_and_keep_the_gradient_of_the_whole_step(tiny_checkpoint, tmp_path):
    """sft_sort_micro_batches: one optimiser step of 4 micro-batches of 2 sorted examples has the
    gradient of the naive loss on its 8 examples in one padded batch (eq. 1 divided by the step's
    trained tokens, then clipped to norm 1), with less padding."""
    import itertools

    from dynamind_lite.training import make_sft_trainer, resolve_preset

    torch.set_num_threads(1)
    preset = resolve_preset(get_preset("tiny"), dict(FAST, model_name_or_path=tiny_checkpoint, sft_batch_size=2,
                                                     sft_grad_accum=4, sft_sort_micro_batches=True,
                                                     sft_max_steps=1))
    grads = {}

    class GrabGradients(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            grads.update({name: p.grad.detach().clone() for name, p in model.named_parameters()})

    trainer = make_sft_trainer(tiny_checkpoint, load_sft_dataset(_mixed_length_file(tmp_path)), tmp_path / "out",
                               preset, callbacks=[GrabGradients()], progress=False)
    micro_batches = list(itertools.islice(iter(trainer.get_train_dataloader()), 4))
    examples = [(ids[mask.bool()], labels[mask.bool()]) for b in micro_batches
                for ids, labels, mask in zip(b["input_ids"], b["labels"], b["attention_mask"])]
    assert len(examples) == 8
    longest = max(len(ids) for ids, _ in examples)
    assert sum(b["input_ids"].numel() for b in micro_batches) < 8 * longest  # less padding than one batch
    trainer.train()

    # ---- naive reference: the 8 examples in one right-padded batch ---------- #
    model, _ = load_policy(tiny_checkpoint, device="cpu")
    input_ids = torch.zeros(8, longest, dtype=torch.long)  # [8, T]
    labels = torch.full((8, longest), -100)  # [8, T]
    mask = torch.zeros(8, longest, dtype=torch.long)  # [8, T]
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, :len(ids)], labels[row, :len(ids)], mask[row, :len(ids)] = ids, labs, 1
    logits = model(input_ids=input_ids, attention_mask=mask).logits  # [8, T, V]
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=-100, reduction="sum") / (targets != -100).sum()
    loss.backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
    scale = min(1.0, 1.0 / (float(norm) + 1e-6))
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad * scale, rtol=1e-4, atol=1e-7)
