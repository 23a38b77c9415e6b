"""Where the shipped data lives, wherever the notebook runs from.

Notebooks run with their own folder as the working directory (JupyterLab), from
the repository root (papermill, the pipeline) or from ``/content`` (Colab, after
the install cell has cloned the repository), so nothing may rely on the working
directory. Set ``DYNAMIND_DATA`` to use a data folder elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout this package was installed from (editable install)."""


def data_dir() -> Path:
    """The ``data/`` folder: ``$DYNAMIND_DATA``, else the checkout's ``data/``."""
    override = os.environ.get("DYNAMIND_DATA")
    path = Path(override) if override else REPO_ROOT / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"data folder not found at {path}: install dynamind-lite from a clone "
            "(pip install -e .) or set DYNAMIND_DATA to the repository's data/ folder"
        )
    return path


def level_file(split: str) -> Path:
    """A shipped Sokoban level file, e.g. ``level_file("id_test")`` -> ``data/sokoban/id_test.jsonl``."""
    path = data_dir() / "sokoban" / f"{split}.jsonl"
    if not path.is_file():
        known = sorted(p.stem for p in (data_dir() / "sokoban").glob("*.jsonl"))
        raise FileNotFoundError(f"no level split {split!r} at {path}; known splits: {known}")
    return path


def tiny_base_dir() -> Path:
    """The shipped tiny base model (``data/models/tiny-base``), loadable like a hub name."""
    return data_dir() / "models" / "tiny-base"


def tiny_alfworld_base_dir() -> Path:
    """The shipped tiny base model of mini-ALFWorld (``data/models/tiny-alfworld-base``,
    ``notebooks/08_alfworld.ipynb``): the ALFWorld tokenizer, ReAct play of a noisy planner."""
    return data_dir() / "models" / "tiny-alfworld-base"


def tiny_distill_dir() -> Path:
    """The shipped tiny DISTILL(RESIM) policy (``data/models/tiny-distill``): where notebooks 05
    and 06 start when no earlier notebook has left ``run_dir/distill``."""
    return data_dir() / "models" / "tiny-distill"
