"""The chat client that every LLM-backed part of the project shares, over any
OpenAI-compatible server.

Introduced in ``notebooks/03_resim_aggregation.ipynb``. Each LLM part lives with
the paper's design it serves, and talks to its model through ``ChatClient``:

- the aggregator that writes a^ReSim: ``resim.LLMAggregator`` (paper Sec. 3.1);
- a prompted value function V(s): ``search.LLMValueFunction`` (the search tree);
- the Sim Score judge: ``evaluate.llm_sim_score`` (evaluation).

The server can be vLLM (``vllm serve MODEL``), ``transformers serve MODEL`` or a
hosted API: everything goes through the official ``openai`` client, so the same
code talks to all three. Prompt templates live in ``dynamind_lite/templates``
(``load_template``, ``fill_template``).

Servers that split ``<think>...</think>`` into a separate ``reasoning_content``
field (transformers serve and vLLM do, for Qwen models) get it glued back, so
``ChatResult.text`` is always the response as the model wrote it.

Secrets: the API key is read from an environment variable (``api_key_env``) and
lives only inside the ``openai`` client; it is never in a repr, a pickle, an
error message or a file.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

# --------------------------------------------------------------------------- #
# Errors and templates (plumbing)
# --------------------------------------------------------------------------- #


class LLMError(RuntimeError):
    """The LLM server failed: timeout, no connection, an HTTP error, or an answer
    that is not a usable chat completion (garbage, empty, unparseable number).
    The message names the server and the problem."""


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_template(name: str) -> str:
    """The text of ``dynamind_lite/templates/NAME.txt`` (e.g. ``"resim_aggregate"``)."""
    path = resources.files("dynamind_lite") / "templates" / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"no prompt template named {name!r} in dynamind_lite/templates/")
    return path.read_text(encoding="utf-8")


def fill_template(template: str, **fields: str) -> str:
    """``template`` with its ``{field}`` placeholders filled.

    Raises ValueError naming the placeholders that have no value, or the values
    that the template has no placeholder for (a custom template that silently
    dropped the rollouts would make every answer wrong)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"prompt template is not a valid format string: {err}") from err
    missing, unused = sorted(names - fields.keys()), sorted(fields.keys() - names)
    if missing or unused:
        raise ValueError(f"prompt template placeholders do not match: missing values for {missing}, "
                         f"no placeholder for {unused}")
    return template.format(**fields)


def shorten(text: Any, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters for an error message, saying how long it was."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# --------------------------------------------------------------------------- #
# The chat client
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ChatResult:
    """One chat answer.

    text: the assistant message as the model wrote it (a ``<think>`` block that
        the server split off is glued back in front).
    completion_tokens: tokens the server generated for it (its ``usage``), >= 0.
    finish_reason: ``"stop"`` (end of turn), ``"length"`` (hit max_tokens), ...
    """

    text: str
    completion_tokens: int
    finish_reason: str | None


class ChatClient:
    """A chat-completions client for one model on one OpenAI-compatible server.

    Introduced in ``notebooks/03_resim_aggregation.ipynb``.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows (for ``transformers serve PATH``:
            the path; for vLLM: the served model name).
        api_key_env: NAME of the environment variable holding the API key (never
            the key itself). Unset -> ``"EMPTY"`` (local servers ignore it).
        timeout: seconds to wait for one answer before giving up, > 0.
        max_retries: extra attempts on timeouts, lost connections, 429 and 5xx
            (the ``openai`` client's backoff), >= 0.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 2):
        if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") \
                or not urlsplit(base_url).netloc:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty model name, got {model!r}")
        if not isinstance(api_key_env, str) or not _ENV_NAME_RE.match(api_key_env):
            # Never echo the value: someone may have passed the key itself.
            raise ValueError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                             "not the key itself")
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max_retries
        import openai  # here, not at module level: the package's RESIM and evaluation import this module

        self._client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                     timeout=self.timeout, max_retries=max_retries)

    def __repr__(self) -> str:
        return (f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
                f"timeout={self.timeout!r}, max_retries={self.max_retries!r})")

    # Pickling (worker processes) keeps the settings only; the key is read from
    # the environment again on the other side.
    def __getstate__(self) -> dict:
        return {"base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                "timeout": self.timeout, "max_retries": self.max_retries}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def _where(self) -> str:
        return f"LLM server {self.base_url} (model {self.model!r})"

    def chat(self, messages: Sequence[dict[str, str]], temperature: float = 0.0, max_tokens: int = 512,
             seed: int | None = None, top_p: float | None = None, allow_empty: bool = False) -> ChatResult:
        """Send one conversation, return the assistant's answer.

        Args:
            messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``.
            temperature: 0.0 = greedy; typical sampling 0.7-1.0.
            max_tokens: most tokens to generate, >= 1.
            seed: sampling seed, for servers that honour it (vLLM, transformers serve).
            top_p: nucleus sampling mass in (0, 1]; None leaves the server default.
            allow_empty: return an empty text instead of raising (a generator's
                empty output is an invalid action for the agent loop, not a failure).

        Raises:
            ValueError: malformed arguments.
            LLMError: timeout, connection or HTTP failure, or an answer that is not
                a chat completion with text and a token count.
        """
        _check_messages(messages)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if not isinstance(temperature, (int, float)) or not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature!r}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        request: dict[str, Any] = {"model": self.model, "messages": list(messages),
                                   "temperature": float(temperature), "max_tokens": max_tokens}
        if seed is not None:
            request["seed"] = int(seed)
        if top_p is not None:
            request["top_p"] = float(top_p)
        import openai

        where = self._where()
        try:
            completion = self._client.chat.completions.create(**request)
        except openai.APITimeoutError as err:
            raise LLMError(f"{where}: timed out, no answer within {self.timeout:g} s "
                           f"({self.max_retries} retries)") from err
        except openai.APIConnectionError as err:
            raise LLMError(f"{where}: connection failed ({shorten(err.__cause__ or err)}); "
                           "is the server running at that address?") from err
        except openai.APIStatusError as err:
            detail = re.sub(r"^Error code: \d+ - ", "", err.message)
            raise LLMError(f"{where}: HTTP error {err.status_code}: {shorten(detail)}") from err
        except (openai.OpenAIError, ValueError) as err:  # body that is not JSON, or not the schema
            raise LLMError(f"{where}: malformed answer, not a chat completion "
                           f"({type(err).__name__}: {shorten(err)})") from err
        return self._read_completion(completion, allow_empty)

    def _read_completion(self, completion: Any, allow_empty: bool) -> ChatResult:
        from openai.types.chat import ChatCompletion

        where = self._where()
        if not isinstance(completion, ChatCompletion):
            raise LLMError(f"{where}: malformed answer, not a chat completion: {shorten(repr(completion))}")
        choices = completion.choices
        if not choices or getattr(choices[0], "message", None) is None:
            raise LLMError(f"{where}: malformed answer without any choice/message: {shorten(repr(completion))}")
        message = choices[0].message
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
        if message.content is None and reasoning is None:
            raise LLMError(f"{where}: answer has no text (message content is null)")
        text = message.content or ""
        if isinstance(reasoning, str) and reasoning:
            text = f"<think>{reasoning}</think>{text}"
        usage = completion.usage
        if usage is None or not isinstance(usage.completion_tokens, int) or usage.completion_tokens < 0:
            raise LLMError(f"{where}: answer has no usage.completion_tokens (token counts are reported metrics)")
        if not allow_empty and not text.strip():
            raise LLMError(f"{where}: empty answer (finish_reason={choices[0].finish_reason!r}, "
                           f"{usage.completion_tokens} tokens)")
        return ChatResult(text=text, completion_tokens=usage.completion_tokens,
                          finish_reason=choices[0].finish_reason)


def _check_messages(messages: Sequence[dict[str, str]]) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"messages[{i}] must be a dict with role system/user/assistant and a string "
                             f"content, got {shorten(repr(message), 80)}")


# --------------------------------------------------------------------------- #
# Reading a number out of a model's answer
# --------------------------------------------------------------------------- #

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_number(text: str, label: str) -> float | None:
    """The number a model answered, or None when it gave no clear one.

    Reasoning before ``</think>`` is skipped. Then, in order: the inside of the
    last ``<answer>...</answer>``; the last ``LABEL: x`` line (e.g. ``Value: 8.8``,
    any case, markdown bold allowed); a text that is nothing but one number.
    A number inside free text is not taken: garbage that happens to hold a digit
    must not become a value.
    """
    if not isinstance(text, str):
        return None
    text = text.rsplit("</think>", 1)[-1]
    if answers := _ANSWER_RE.findall(text):
        text = answers[-1]
    labelled = re.findall(rf"^\s*\**{re.escape(label)}\**\s*[:=]\s*\**\s*({_NUMBER})(?!\w|\.\d)", text,
                          re.IGNORECASE | re.MULTILINE)
    alone = re.fullmatch(rf"\s*({_NUMBER})\.?\s*", text)
    number = labelled[-1] if labelled else alone.group(1) if alone else None
    if number is None or not math.isfinite(float(number)):
        return None
    return float(number)
