"""Policy models: the domain tokenizer, the tiny base model, one loader for all.

Introduced in ``notebooks/04_resim_sft.ipynb``.
"""

from dynamind_lite.models.loader import LoraSettings, load_policy
from dynamind_lite.models.tokenizer import build_tokenizer

__all__ = ["LoraSettings", "build_tokenizer", "load_policy"]
