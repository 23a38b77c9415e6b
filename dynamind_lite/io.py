"""Atomic writes: a file or a model directory appears complete or not at all.

Every artefact the project writes (level sets, SFT data, metrics, checkpoints)
goes through these helpers, so an error or an interrupt never leaves a partial
file behind. Used from notebook 01 on.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same
    folder, renamed over ``path`` only when complete. Creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; give the usual umask-based mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """``payload`` as indented JSON (UTF-8, no ASCII escaping), written atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def jsonl_text(rows: Iterable[dict]) -> str:
    """One JSON object per line, in order (the byte format of every shipped JSONL file)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """JSONL, written atomically."""
    return write_text_atomic(path, jsonl_text(rows))


def save_directory_atomic(target: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(folder)`` on a temporary sibling folder of ``target``, then swap it
    in for ``target`` (an old ``target`` is replaced whole); on an error nothing changes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the usual umask-based mode
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)
    return target


def save_pretrained_atomic(model: Any, tokenizer: Any, target: str | os.PathLike) -> Path:
    """``save_pretrained`` of a model and its tokenizer into a temporary sibling
    folder, then swapped in for ``target`` (an old ``target`` is replaced whole)."""
    return save_directory_atomic(target, lambda folder: (model.save_pretrained(folder),
                                                         tokenizer.save_pretrained(folder)))
