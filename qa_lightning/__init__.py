"""qa_lightning: fine-tune Hugging Face encoders for extractive question answering (SQuAD) with PyTorch Lightning.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
__all__ = ["SquadDataModule", "QAModule", "__version__"]
_LAZY = {"SquadDataModule": ".data.datamodule", "QAModule": ".module"}  # imported on first use


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'qa_lightning' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
