"""Point every notebook's Colab badge and install cell at one GitHub repository.

    python scripts/set_repository.py                 # restamp the notebooks from pyproject.toml
    python scripts/set_repository.py OWNER/NAME      # change the setting, then restamp

The address lives in one place, ``[tool.dynamind-lite] repository`` of
``pyproject.toml``. A notebook cannot read that file before the repository is
cloned (its badge is static Markdown, and on Colab the install cell runs first),
so this script writes the address into the two places that need it: the badge
``colab.research.google.com/github/OWNER/NAME/blob/main/notebooks/FILE`` and
the install cell's default ``https://github.com/OWNER/NAME`` (which the
environment variable ``DYNAMIND_LITE_REPOSITORY`` overrides at run time, for a
fork). ``tests/test_repo.py`` fails when a notebook disagrees with the setting.
Notebooks are rewritten atomically and keep their outputs-free JSON layout.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
BADGE_RE = re.compile(r"colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/main/notebooks/")
INSTALL_RE = re.compile(r'("DYNAMIND_LITE_REPOSITORY", )"https://github\.com/[^"]+"')


def repository() -> str:
    """The ``owner/name`` of ``[tool.dynamind-lite] repository`` in pyproject.toml."""
    return tomllib.loads(PYPROJECT.read_text())["tool"]["dynamind-lite"]["repository"]


def stamp(source: str, repo: str) -> str:
    """A cell's source with its badge and install-cell address set to ``repo``."""
    source = BADGE_RE.sub(f"colab.research.google.com/github/{repo}/blob/main/notebooks/", source)
    return INSTALL_RE.sub(lambda m: f'{m.group(1)}"https://github.com/{repo}"', source)


def stamp_notebook(text: str, repo: str) -> str:
    """A notebook's JSON text with every cell stamped (``stamp``); the layout is kept."""
    notebook = json.loads(text)
    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = stamp(source, repo).splitlines(keepends=True)
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python scripts/set_repository.py [OWNER/NAME]", file=sys.stderr)
        return 2
    if argv:
        if not _REPO_RE.match(argv[0]):
            print(f"error: {argv[0]!r} is not OWNER/NAME (e.g. my-user/dynamind-lite)", file=sys.stderr)
            return 2
        text = PYPROJECT.read_text()
        _write_atomic(PYPROJECT, re.sub(r'(?m)^repository = ".*"$', f'repository = "{argv[0]}"', text, count=1))
    repo = repository()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        new = stamp_notebook(text, repo)
        if new != text:
            _write_atomic(path, new)
            print(f"{path.name}: now points at {repo}")
    print(f"every notebook points at https://github.com/{repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
