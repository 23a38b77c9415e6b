"""The tiny preset's domain tokenizer: one token per grid cell, exact round trip.

Introduced in ``notebooks/04_resim_sft.ipynb`` (the tiny preset trains a small
Qwen2-architecture model from scratch, which needs a vocabulary of its own).

Departures from the paper (which uses Qwen2.5's 151k-token byte-level BPE):

* Same pipeline as Qwen2.5 (NFC, Qwen's pre-tokenizer regex, byte-level BPE,
  ChatML), so the saved tokenizer reloads with ``AutoTokenizer`` exactly as a
  Qwen2.5 tokenizer does, but the vocabulary is a few hundred tokens learned
  from the project's own strings (system prompt, prompt and a^ReSim grammar
  words, the tiny base model's reasoning phrases): a model of a few million
  parameters spends them on the task, not on a 151k-row embedding table.
* No merge joins two grid symbols or a newline, so a grid row such as
  ``#_XP_#`` is six tokens, one per cell (``√`` included): the model copies
  and edits grids cell by cell when it simulates a move.
* Byte-level BPE keeps all 256 bytes in the vocabulary, so any text (any
  Unicode an LLM aggregator might write) encodes and decodes back exactly
  (NFC-normalised, as in Qwen2.5).

``build_tokenizer("alfworld")`` learns the vocabulary of the text world instead
(``notebooks/08_alfworld.ipynb``): the words of ALFWorld's own text grammar
(``alfworld.info.ALFRED_TWL2_PATH``, every feedback and command template), every
object and receptacle name of mini-ALFWorld (OOD ones included: an unseen
object still has its word, as an LLM's tokenizer would), the text-world prompt
and the a^ReSim grammar. Every word becomes one token, so a command such as
``take egg 2 from countertop 1`` is a handful of tokens.

The chat template is ChatML, as in Qwen2.5, with ``{% generation %}`` markers
around the assistant's content so that TRL's ``assistant_only_loss=True``
trains on the response tokens only.
"""

from __future__ import annotations

import json

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from dynamind_lite.prompts import SYSTEM_PROMPT
from dynamind_lite.response import ACTIONS, GRID_SYMBOLS

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
"""ChatML control tokens (as in Qwen2.5); pad = ``<|endoftext|>``, eos = ``<|im_end|>``."""

TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
"""Response tags, kept whole (ordinary tokens: they survive ``skip_special_tokens``)."""

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML; the assistant turn (content + ``<|im_end|>``) is the only trained span."""

REASONING_PHRASES = (
    "The box is above me, so I push it up.",
    "The box is below me, so I push it down.",
    "The box is to my left, so I push it left.",
    "The box is to my right, so I push it right.",
    "I move up toward the box.",
    "I move down toward the box.",
    "I move left toward the box.",
    "I move right toward the box.",
    "I walk around the box to get behind it.",
    "I need to push the box onto the target.",
    "All boxes are on targets.",
)
"""Short ReAct-style reasoning sentences of the tiny base model's pre-training data."""

# Every fixed string the project puts in prompts and responses; the vocabulary
# is learned from these. Words absent here still encode (as smaller pieces).
_GRAMMAR = (
    "Previous state:\nCurrent state:\nAction: Up\nAction: Down\nAction: Left\nAction: Right\n"
    "Action: (invalid)\nRollout 1: Up Left\nAfter Up:\nAfter Down:\nAfter Left:\nAfter Right:\n"
    "Value: 9.6\nRollout 2: Down Right\nBest: Rollout 1 with value 9.6.\nPlan: Up Left Right Down\n"
    "Both rollouts are equally good, so I take the first one. This rollout gets closer to the goal.\n"
    "system user assistant\n"
)
_GRID_EXAMPLE = "######\n#_√S_#\n#_XP_#\n#_O__#\n######"  # teaches the bytes of √ to merge


def _training_corpus() -> list[str]:
    return [SYSTEM_PROMPT, _GRAMMAR, _GRID_EXAMPLE, *REASONING_PHRASES, " ".join(ACTIONS), "\n".join(ACTIONS)]


_TEXT_WORLD_GRAMMAR = (
    "Task: put a clean egg in fridge\nPrevious state:\nCurrent state:\nAction: go to fridge 1\n"
    "Action: (invalid)\nAdmissible actions: go to fridge 1; open fridge 1; look; inventory; help\n"
    "Rollout 1: go to fridge 1, open fridge 1\nAfter go to fridge 1:\nValue: 9.6\nRollout 2: look\n"
    "Best: Rollout 1.\nPlan: go to fridge 1, open fridge 1\nNothing happens.\n"
    "Your response:\nReal states of your plan:\nRefine your response with the real states above.\n"
    "system user assistant\n0 1 2 3 4 5 6 7 8 9 10 -0.1\n"
)


def _text_world_corpus() -> list[str]:
    """ALFWorld's text grammar, mini-ALFWorld's names and the text-world prompts."""
    try:
        import alfworld.info
    except ImportError:
        raise ImportError("the ALFWorld tokenizer is learned from ALFWorld's grammar file: "
                          "pip install -e \".[alfworld]\"") from None
    from pathlib import Path

    from dynamind_lite.envs.mini_alfworld import DEFAULT_VOCABULARY, TASK_TYPES
    from dynamind_lite.prompts import ALFWORLD_SYSTEM_PROMPT

    grammar = Path(alfworld.info.ALFRED_TWL2_PATH).read_text()  # command and feedback templates
    names = [name.lower() for name in (*DEFAULT_VOCABULARY.objects, *DEFAULT_VOCABULARY.receptacles)]
    return [ALFWORLD_SYSTEM_PROMPT, _TEXT_WORLD_GRAMMAR, grammar, " ".join(names),
            " ".join(t.replace("_", " ") for t in TASK_TYPES), *REASONING_PHRASES[-2:]]


CORPORA = {"sokoban": _training_corpus, "alfworld": _text_world_corpus}
"""World -> the strings its tokenizer's vocabulary is learned from."""


def _byte_to_text(token: str) -> str | None:
    """The text of a byte-level token, or None when it is a partial UTF-8 character."""
    try:
        return bytes(_BYTE_OF_CHAR[c] for c in token).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table (index = byte value)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


_BYTE_LEVEL_CHARS = _bytes_to_unicode()
_BYTE_OF_CHAR = {char: byte for byte, char in enumerate(_BYTE_LEVEL_CHARS)}


def _splits_grid_cells(token: str) -> bool:
    """True when ``token`` would glue two grid cells or a line break together."""
    text = _byte_to_text(token)
    if text is None:
        return False
    return "\n" in text or "\r" in text or (len(text) >= 2 and all(c in GRID_SYMBOLS for c in text))


def _learn_vocab_and_merges(world: str = "sokoban") -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE on the project's strings, minus merges that glue grid cells.

    Returns ``(vocab, merges)``: ids 0-2 the ChatML tokens, then the 256 bytes,
    then one token per kept merge, in merge order. Deterministic.
    """
    scratch = Tokenizer(models.BPE())
    scratch.normalizer = normalizers.NFC()
    scratch.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,  # never reached: every word of the corpus ends up whole
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    scratch.train_from_iterator(CORPORA[world](), trainer=trainer)
    learned = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
               for m in json.loads(scratch.to_str())["model"]["merges"]]
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *_BYTE_LEVEL_CHARS])}
    merges = []
    for left, right in learned:
        merged = left + right
        if left in vocab and right in vocab and not _splits_grid_cells(merged) and merged not in vocab:
            merges.append((left, right))
            vocab[merged] = len(vocab)
    return vocab, merges


def build_tokenizer(world: str = "sokoban") -> PreTrainedTokenizerFast:
    """The project's domain tokenizer for ``world`` (same bytes every call).

    Introduced in ``notebooks/04_resim_sft.ipynb`` (Sokoban) and
    ``notebooks/08_alfworld.ipynb`` (``"alfworld"``; needs the alfworld extra).

    Returns a ``Qwen2Tokenizer`` (a ``PreTrainedTokenizerFast``) with ChatML
    special tokens (pad = ``<|endoftext|>``, eos = ``<|im_end|>``), the chat
    template above and right padding (``load_policy`` switches to left padding
    for generation). Save it with ``save_pretrained`` next to a model and load
    it back with ``AutoTokenizer.from_pretrained``, like any Qwen2.5 tokenizer.
    """
    if world not in CORPORA:
        raise ValueError(f"unknown world {world!r}; choose one of {sorted(CORPORA)}")
    vocab, merges = _learn_vocab_and_merges(world)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        extra_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in TAG_TOKENS])
    return tokenizer
