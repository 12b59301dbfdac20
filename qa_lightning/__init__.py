"""qa_lightning: fine-tune Hugging Face encoders for extractive question answering (SQuAD) with PyTorch Lightning.

    python -m qa_lightning fit                          # the reference recipe (bert-base-cased on SQuAD v1.1)
    python -m qa_lightning fit --config configs/debug.yaml

The package is the library, in wings: ``data/`` (sources, features, batching, samplers, cache, the data module),
``evaluation/`` (evalset, gather, decoding, metrics, post-processing), ``hf.py`` (transformers loading), ``module.py``
(the LightningModule), ``resume.py``, ``callbacks.py``, ``export.py``, ``cli.py``. ``SquadDataModule`` and
``QAModule`` are imported lazily so that the pure modules can be used without importing Lightning.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["SquadDataModule", "QAModule", "__version__"]


def __getattr__(name: str):
    if name == "SquadDataModule":
        from .data.datamodule import SquadDataModule

        return SquadDataModule
    if name == "QAModule":
        from .module import QAModule

        return QAModule
    raise AttributeError(f"module 'qa_lightning' has no attribute {name!r}")
