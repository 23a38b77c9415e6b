"""Multi-turn GRPO: episode-level group advantages on every token of every step (paper Sec. 3.2).

Introduced in ``notebooks/06_dyna_grpo.ipynb``; the policy-improvement phase of
Dyna-GRPO (``dynamind_lite.dyna_grpo``) and the +GRPO baseline both run it.

For one task (a level) the policy plays G episodes tau_1..tau_G with returns
R_i = sum_t r_t. Every response token o_{i,t,k} of every step t of episode i
carries that episode's advantage::

    A_i = (R_i - mean_j R_j) / (std_j R_j + eps)                                  (group advantage)
    rho = pi_theta(o | x) / pi_old(o | x)                                         (importance ratio)
    L_clip = -min(rho A_i, clip(rho, 1 - epsilon, 1 + epsilon) A_i)               (clipped surrogate)
    KL     = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1                       (k3 estimator of KL(pi_theta || pi_ref))
    L(theta) = 1/E sum_i 1/|o_i| sum_{t,k} (L_clip + beta KL)        E episodes in the batch, |o_i| the
                                                                     response tokens of episode i

with x the step's prompt (system + last h steps + s_t), pi_old the policy that
generated the episodes, and pi_ref the starting (distilled) policy: LoRA
adapters disabled, or a frozen copy under full fine-tuning. One batch of
episodes is used for mu optimiser steps (mu = 1: rho = 1 in value, and only
its gradient matters).

Where we depart from the paper, or choose where it is silent, and why:

- TRL's ``GRPOTrainer`` samples one completion per prompt and scores it; our
  episodes are multi-turn with a history window: one sample per step, and a
  variable number of samples per group (episodes end at different steps). So
  the loss terms below are small pure functions, and the update is a plain
  loop over padded micro-batches. Under ``accelerate launch`` each process
  plays its share of the tasks and the gradients are summed over processes
  before every optimiser step (``sum_gradients_over_processes``) rather than
  through DDP hooks: processes hold different numbers of samples, which DDP's
  per-backward synchronisation cannot express.
- Loss normalisation: GRPO's own 1/G sum_i 1/|o_i| with an *episode* as the
  output o_i: a mean over each episode's response tokens, then over episodes.
  We measured the token-level alternative (one mean over all tokens of the
  batch, DAPO's) first: failed episodes run to the step budget and carry
  several times the tokens of solved ones, so the negative advantages outweigh
  the positive ones token for token and push down the tokens every response
  shares (grids, format). Training success fell over 8 iterations (0.72 ->
  0.55 at lr 1e-4). Per-episode means give each episode the same weight and
  the advantages of a group sum to zero.
- std is the unbiased group standard deviation (``torch.std``), eps = 1e-4.
  A group whose returns are all equal has A = 0 everywhere; its samples are
  dropped from the update (they would only add the KL term), which saves the
  compute of a group that teaches nothing.
- The response is re-tokenised from its text (plus the end-of-turn token when
  it stopped) rather than kept as generated ids, so every backend (HF, vLLM,
  an OpenAI-compatible server) produces training samples the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

ADVANTAGE_EPS = 1e-4
"""eps in A = (R - mean) / (std + eps)."""

# =========================================================================== #
# The loss terms (pure functions; tests check them against per-token loops)
# =========================================================================== #


def group_advantages(returns: torch.Tensor, eps: float = ADVANTAGE_EPS) -> torch.Tensor:
    """A_i = (R_i - mean R) / (std R + eps) for one group.

    returns: [G] episode returns R_i (Sokoban: -3 .. 10). Returns [G]; all
    zeros when G == 1 or every return is equal.
    """
    returns = returns.to(torch.float64)
    if returns.numel() < 2:
        return torch.zeros_like(returns)
    return (returns - returns.mean()) / (returns.std() + eps)


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log pi(target_k | prefix) for every position.

    logits: [B, T, V] (position k predicts targets[:, k]); targets: [B, T] token
    ids. Returns [B, T] in float32. Computed as logit - logsumexp(logits), which
    needs no [B, T, V] log-softmax copy.
    """
    logits = logits.float()
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)  # [B, T]
    return picked - torch.logsumexp(logits, dim=-1)


def clipped_surrogate(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                      epsilon: float) -> torch.Tensor:
    """L_clip = -min(rho A, clip(rho, 1 - eps, 1 + eps) A) per token, rho = exp(log pi - log pi_old).

    log_probs, old_log_probs: [B, T]; advantages: [B] (one per sample, broadcast
    over its tokens); epsilon: clip range, typically 0.2. Returns [B, T].
    """
    ratio = torch.exp(log_probs - old_log_probs)  # rho, [B, T]
    advantages = advantages.unsqueeze(-1).to(log_probs.dtype)  # [B, 1]
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantages
    return -torch.minimum(unclipped, clipped)


def kl_k3(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(pi_theta || pi_ref) per token, k3 estimator: exp(q) - q - 1 with q = log pi_ref - log pi_theta.

    Non-negative, zero where the two agree; [B, T] in, [B, T] out.
    """
    q = ref_log_probs - log_probs
    return torch.exp(q) - q - 1.0


def grpo_token_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, ref_log_probs: torch.Tensor | None,
                    advantages: torch.Tensor, epsilon: float, beta: float) -> torch.Tensor:
    """L_clip + beta KL per token ([B, T]); ``ref_log_probs`` may be None when beta == 0."""
    loss = clipped_surrogate(log_probs, old_log_probs, advantages, epsilon)
    if beta:
        loss = loss + beta * kl_k3(log_probs, ref_log_probs)
    return loss


def masked_token_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over response tokens: values [B, T], mask [B, T] (1 on response tokens)."""
    return (values * mask).sum()


# =========================================================================== #
# Samples: one per step, carrying its episode's advantage
# =========================================================================== #


@dataclass
class Sample:
    """One training sample: a prompt and the response generated for it.

    messages: the chat prompt ([system, user]).
    response: the response text.
    stopped: the response ended with the end-of-turn token (not cut at max_new_tokens).
    advantage: A of the episode (or A_refine), a float.
    kind: which part of the algorithm made it: ``"tau"`` (standard step),
        ``"tau_prime"`` (refined response under the original prompt),
        ``"refine"`` (refined response under s^refine).
    episode: key of the trajectory it belongs to (the loss averages over each
        trajectory's tokens, then over trajectories); None: a trajectory of its own.
    """

    messages: list[dict[str, str]]
    response: str
    stopped: bool
    advantage: float
    kind: str = "tau"
    episode: str | None = None


def episode_samples(episode, advantage: float, kind: str = "tau", key: str | None = None) -> list[Sample]:
    """Every step of an ``rollout.EpisodeRecord`` as a Sample with the episode's advantage
    (for a SimRollout episode: the refined responses under the original prompts, tau').
    ``key`` names the trajectory (default: ``kind`` and the record's id)."""
    key = key or f"{kind}:{id(episode)}"
    return [Sample(step.messages, step.response, step.finish_reason != "length", float(advantage), kind, key)
            for step in episode.steps]


def grpo_samples(groups: Sequence[Sequence]) -> tuple[list[Sample], list[float]]:
    """Plain GRPO: for each group (the G episodes of one task), A_i from the returns.

    Returns the samples of every episode with A != 0, and every episode's A.
    """
    samples, advantages = [], []
    for episodes in groups:
        group_a = group_advantages(torch.tensor([e.total_reward for e in episodes])).tolist()
        advantages += group_a
        for episode, a in zip(episodes, group_a):
            if a != 0.0:
                samples += episode_samples(episode, a)
    return samples, advantages


# =========================================================================== #
# Plumbing: tokenise, batch, log-probs
# =========================================================================== #


@dataclass
class TokenizedSample:
    """input_ids: prompt + response token ids; response_start: index of the first response token;
    weight: of each of its response tokens in the loss, 1 / (E |o_i|) (set by ``policy_update``)."""

    input_ids: list[int]
    response_start: int
    advantage: float
    episode: str
    weight: float = 0.0


def end_of_turn_id(tokenizer) -> int:
    """The id that ends an assistant turn (``<|im_end|>``, else eos)."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        return im_end
    return tokenizer.eos_token_id


def tokenize_samples(tokenizer, samples: Sequence[Sample]) -> list[TokenizedSample]:
    """Render each prompt with the chat template (assistant turn opened, as the
    generators do) and append the response tokens (+ end of turn when it stopped)."""
    eot = end_of_turn_id(tokenizer)
    tokenized = []
    for index, sample in enumerate(samples):
        prompt = tokenizer.apply_chat_template(sample.messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(sample.response, add_special_tokens=False)["input_ids"] + ([eot] if sample.stopped
                                                                                          else [])
        if not response_ids:
            continue  # an empty, cut-off response: no token to train
        tokenized.append(TokenizedSample(prompt_ids + response_ids, len(prompt_ids), sample.advantage,
                                         sample.episode if sample.episode is not None else f"sample:{index}"))
    return tokenized


def collate(batch: Sequence[TokenizedSample], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded tensors for one micro-batch.

    input_ids, attention_mask: [B, L]; targets, response_mask: [B, L-1] (target k
    is input k+1; the mask is 1 where that target is a response token);
    advantages, weights: [B].
    """
    length = max(len(s.input_ids) for s in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)  # [B, L]
    attention_mask = torch.zeros((len(batch), length), dtype=torch.long)  # [B, L]
    response_mask = torch.zeros((len(batch), length - 1), dtype=torch.float32)  # [B, L-1]
    for row, sample in enumerate(batch):
        n = len(sample.input_ids)
        input_ids[row, :n] = torch.tensor(sample.input_ids)
        attention_mask[row, :n] = 1
        response_mask[row, sample.response_start - 1:n - 1] = 1.0
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
            "targets": input_ids[:, 1:].to(device), "response_mask": response_mask.to(device),
            "advantages": torch.tensor([s.advantage for s in batch], dtype=torch.float32, device=device),
            "weights": torch.tensor([s.weight for s in batch], dtype=torch.float32, device=device)}


def sequence_log_probs(model, batch: dict[str, torch.Tensor], with_entropy: bool = False):
    """log pi(o_k | x, o_<k) at every target position ([B, L-1]); with_entropy also
    returns the entropy of pi at every position ([B, L-1], detached), else None."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]  # [B, L-1, V]
    log_probs = token_log_probs(logits, batch["targets"])
    if not with_entropy:
        return log_probs, None
    with torch.no_grad():
        logp_all = torch.log_softmax(logits.float(), dim=-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # [B, L-1]
    return log_probs, entropy


def micro_batches(samples: Sequence[TokenizedSample], size: int) -> list[list[TokenizedSample]]:
    """Samples in length order, ``size`` at a time (little padding)."""
    ordered = sorted(samples, key=lambda s: len(s.input_ids))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


# =========================================================================== #
# The update: mu optimiser steps on one batch of samples
# =========================================================================== #


@dataclass
class UpdateStats:
    """What one ``policy_update`` did: loss, KL, entropy and clipped fraction as episode-weighted
    means over response tokens (at the first of the mu steps), samples and response tokens used."""

    loss: float
    kl: float
    entropy: float
    clip_fraction: float
    num_samples: int
    num_tokens: int


def sum_gradients_over_processes(model, accelerator) -> None:
    """grad <- sum over processes of grad, for every trainable parameter (a process
    without samples contributes zeros). Each process's loss is already divided by
    the token count of the whole batch, so the sum is the whole batch's gradient."""
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        parameter.grad = accelerator.reduce(grad.contiguous(), reduction="sum")


def reference_forward(model, ref_model):
    """A context for pi_ref's forward pass: the frozen copy, or the policy with its LoRA
    adapters disabled. Returns ``(context manager, the model to call)``."""
    if ref_model is not None:
        return contextlib.nullcontext(), ref_model
    if not hasattr(model, "disable_adapter"):
        raise ValueError("beta > 0 needs pi_ref: pass ref_model (full fine-tuning) or a LoRA policy")
    return model.disable_adapter(), model


def policy_update(model, optimizer, tokenizer, samples: Sequence[Sample], *, epsilon: float, beta: float, mu: int,
                  micro_batch_size: int, ref_model=None, accelerator=None, max_grad_norm: float = 1.0) -> UpdateStats:
    """mu optimiser steps of L(theta) (module docstring) on ``samples``.

    Under ``accelerate`` each process passes its own share of the samples (any
    number, zero included; an episode's samples all on one process). Each token
    weighs 1 / (E |o_i|) with E the episodes of all processes, and the gradients
    are summed over processes before each step, so every process takes the step
    of the whole batch and the weights stay identical.
    """
    device = next(model.parameters()).device
    tokenized = tokenize_samples(tokenizer, samples)
    episode_tokens: dict[str, int] = {}
    for sample in tokenized:
        episode_tokens[sample.episode] = episode_tokens.get(sample.episode, 0) + len(sample.input_ids) - \
            sample.response_start
    num_episodes = float(len(episode_tokens))
    if accelerator is not None:
        num_episodes = float(accelerator.reduce(torch.tensor(num_episodes, device=device), reduction="sum"))
    if num_episodes == 0:
        return UpdateStats(0.0, 0.0, 0.0, 0.0, 0, 0)
    for sample in tokenized:
        sample.weight = 1.0 / (episode_tokens[sample.episode] * num_episodes)  # 1 / (E |o_i|)
    batches = [collate(b, tokenizer.pad_token_id, device) for b in micro_batches(tokenized, micro_batch_size)]

    # ---- pi_old and pi_ref on the batch (no gradient) --------------------- #
    model.eval()  # no dropout: log-probs of the rollout policy
    with torch.no_grad():
        old = [sequence_log_probs(model, b)[0] for b in batches] if mu > 1 else None
        ref = None
        if beta:
            context, ref_caller = reference_forward(model, ref_model)
            with context:
                ref = [sequence_log_probs(ref_caller, b)[0] for b in batches]

    # ---- mu optimiser steps ----------------------------------------------- #
    model.train()
    loss_sum = kl_sum = clipped_sum = entropy_sum = weight_sum = 0.0
    for step in range(mu):
        optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(batches):
            log_probs, entropy = sequence_log_probs(model, batch, with_entropy=step == 0)
            old_log_probs = old[index] if old is not None else log_probs.detach()  # mu == 1: rho = 1
            ref_log_probs = ref[index] if ref is not None else None
            token_loss = grpo_token_loss(log_probs, old_log_probs, ref_log_probs, batch["advantages"], epsilon, beta)
            weighted_mask = batch["response_mask"] * batch["weights"].unsqueeze(-1)  # 1 / (E |o_i|) per token
            loss = masked_token_sum(token_loss, weighted_mask)
            loss.backward()
            if step == 0:
                with torch.no_grad():
                    loss_sum += float(loss)
                    weight_sum += float(weighted_mask.sum())
                    entropy_sum += float(masked_token_sum(entropy, weighted_mask))
                    if ref_log_probs is not None:
                        kl_sum += float(masked_token_sum(kl_k3(log_probs, ref_log_probs), weighted_mask))
                    ratio = torch.exp(log_probs - old_log_probs)
                    clipped_sum += float(masked_token_sum(((ratio - 1).abs() > epsilon).float(), weighted_mask))
        if accelerator is not None:
            sum_gradients_over_processes(model, accelerator)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
    model.eval()
    n = max(weight_sum, 1e-12)  # this process's share of the episode weights
    return UpdateStats(loss=loss_sum / n, kl=kl_sum / n, entropy=entropy_sum / n, clip_fraction=clipped_sum / n,
                       num_samples=len(tokenized), num_tokens=sum(episode_tokens.values()))
