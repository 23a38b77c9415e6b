"""GRPO loss terms against naive per-token references, and a real learning test."""

from __future__ import annotations

import math
import random

import pytest
import torch

from dynamind_lite.grpo import (
    Sample,
    clipped_surrogate,
    collate,
    group_advantages,
    grpo_token_loss,
    kl_k3,
    masked_token_sum,
    policy_update,
    sequence_log_probs,
    token_log_probs,
    tokenize_samples,
)
from dynamind_lite.prompts import build_messages


def test_group_advantages_match_the_formula_written_out():
    rng = random.Random(0)
    for size in (2, 3, 8):
        returns = [rng.choice([-2.0, -0.5, 9.3, 9.6, 10.0]) + rng.random() for _ in range(size)]
        mean = sum(returns) / size
        std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (size - 1))  # unbiased, as torch.std
        expected = [(r - mean) / (std + 1e-4) for r in returns]
        assert group_advantages(torch.tensor(returns, dtype=torch.float64)).tolist() == pytest.approx(expected, rel=1e-9)
    assert group_advantages(torch.tensor([3.0, 3.0, 3.0])).tolist() == [0.0, 0.0, 0.0]
    assert group_advantages(torch.tensor([5.0])).tolist() == [0.0]


def test_token_log_probs_equal_log_softmax_picked_one_by_one():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11) * 4  # [B, T, V]
    targets = torch.randint(0, 11, (3, 5))
    got = token_log_probs(logits, targets)
    for b in range(3):
        for t in range(5):
            row = logits[b, t].tolist()
            log_z = math.log(sum(math.exp(x) for x in row))
            assert got[b, t].item() == pytest.approx(row[targets[b, t]] - log_z, abs=1e-5)


def _naive_token_loss(logp, old, ref, a, epsilon, beta):
    ratio = math.exp(logp - old)
    surrogate = -min(ratio * a, max(min(ratio, 1 + epsilon), 1 - epsilon) * a)
    q = ref - logp
    return surrogate + beta * (math.exp(q) - q - 1)


@pytest.mark.parametrize("epsilon,beta", [(0.2, 0.0), (0.2, 0.04), (0.05, 1.0)])
def test_grpo_token_loss_matches_a_per_token_loop(epsilon, beta):
    torch.manual_seed(1)
    logp = -torch.rand(4, 6) * 3
    old = logp + torch.randn(4, 6) * 0.5  # ratios on both sides of the clip range
    ref = logp + torch.randn(4, 6) * 0.3
    advantages = torch.tensor([1.5, -0.7, 0.0, -2.0])
    got = grpo_token_loss(logp, old, ref, advantages, epsilon, beta)
    for b in range(4):
        for t in range(6):
            expected = _naive_token_loss(logp[b, t].item(), old[b, t].item(), ref[b, t].item(),
                                         advantages[b].item(), epsilon, beta)
            assert got[b, t].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_clipping_and_kl_properties():
    logp = torch.tensor([[math.log(0.5)]])
    old = torch.tensor([[math.log(0.25)]])  # ratio 2
    assert clipped_surrogate(logp, old, torch.tensor([1.0]), 0.2).item() == pytest.approx(-1.2)  # clipped
    assert clipped_surrogate(logp, old, torch.tensor([-1.0]), 0.2).item() == pytest.approx(2.0)  # pessimistic
    assert kl_k3(logp, logp).item() == 0.0
    assert (kl_k3(-torch.rand(100), -torch.rand(100)) >= 0).all()
    values, mask = torch.arange(6.0).view(2, 3), torch.tensor([[0.0, 1, 1], [1, 0, 0]])
    assert masked_token_sum(values, mask).item() == 1 + 2 + 3


def test_collated_response_mask_covers_exactly_the_response_tokens(tiny_checkpoint):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    samples = [Sample(build_messages("#####\n#P_O#\n#####"), "<think>x</think><answer>Up</answer>", True, 1.0),
               Sample(build_messages("#####\n#_PO#\n#####"), "<think>y", False, -1.0)]
    tokenized = tokenize_samples(tokenizer, samples)
    batch = collate(tokenized, tokenizer.pad_token_id, "cpu")
    for row, (sample, tok) in enumerate(zip(samples, tokenized)):
        response_targets = batch["targets"][row][batch["response_mask"][row].bool()].tolist()
        expected = tokenizer(sample.response, add_special_tokens=False)["input_ids"]
        expected += [tokenizer.convert_tokens_to_ids("<|im_end|>")] if sample.stopped else []
        assert response_targets == expected


def test_grpo_update_raises_the_probability_of_the_rewarded_answer(tiny_checkpoint):
    """A real learning test: one prompt, G = 4 sampled answers, reward 10 for Left only.
    A few GRPO updates must raise log pi(Left answer) and lower the others."""
    from dynamind_lite.models.loader import load_policy

    model, tokenizer = load_policy(tiny_checkpoint, device="cpu", dtype="float32")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    prompt = build_messages("######\n#_P_O#\n######")
    answers = {a: f"<think>Plan: {a}</think><answer>{a}</answer>" for a in ("Up", "Down", "Left", "Right")}
    rewards = torch.tensor([10.0 if a == "Left" else -0.1 for a in answers])
    advantages = group_advantages(rewards).tolist()
    samples = [Sample(prompt, text, True, adv) for text, adv in zip(answers.values(), advantages)]

    def answer_log_probs():
        batch = collate(tokenize_samples(tokenizer, samples), tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            logp, _ = sequence_log_probs(model, batch)
        return (logp * batch["response_mask"]).sum(-1).tolist()  # log pi(response | prompt), [4]

    before = answer_log_probs()
    for _ in range(5):
        policy_update(model, optimizer, tokenizer, samples, epsilon=0.2, beta=0.0, mu=2, micro_batch_size=2)
    after = answer_log_probs()
    assert after[2] > before[2] + 1.0  # Left: rewarded
    assert all(after[i] < before[i] for i in (0, 1, 3))
    objective = [sum(a * lp for a, lp in zip(advantages, lps)) for lps in (before, after)]
    assert objective[1] > objective[0]  # sum_i A_i log pi(o_i): what the update ascends


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_lora_and_qlora_policies_train_with_adapters_disabled_as_the_reference(checkpoint64, quantized):
    """Under LoRA (and 4-bit QLoRA) pi_ref is the policy with its adapters disabled: the
    KL starts at 0, grows as the adapters learn, and the frozen base never moves."""
    from dynamind_lite.models.loader import LoraSettings, load_policy

    torch.manual_seed(0)
    model, tokenizer = load_policy(checkpoint64, lora=LoraSettings(r=8, alpha=16, dropout=0.0), device="cpu",
                                   load_in_4bit=quantized, dtype="float32")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    prompt = build_messages("#####\n#P_O#\n#####")
    samples = [Sample(prompt, "<think>Plan: Right</think><answer>Right</answer>", True, 1.0),
               Sample(prompt, "<think>Plan: Up</think><answer>Up</answer>", True, -1.0)]
    kls = [policy_update(model, optimizer, tokenizer, samples, epsilon=0.2, beta=0.1, mu=1,
                         micro_batch_size=2).kl for _ in range(4)]
    assert kls[0] == pytest.approx(0.0, abs=1e-6) and kls[-1] > 1e-4
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
