"""The command line: ``python -m qa_lightning {fit,validate,test,predict,ask,export}``, also installed as the
``qa-lightning`` script; ``python -m qa_lightning --help`` lists all six, ``SUBCOMMAND --help`` its options.

    python -m qa_lightning fit --config configs/debug.yaml          # fit|validate|test|predict: cli.py (Lightning)
    python -m qa_lightning ask --model EXPORT_DIR --question ... --context ...   # ask.py
    python -m qa_lightning export CKPT OUT_DIR                      # export.py

``ask`` and ``export`` need no Lightning CLI: they are dispatched here, before Lightning is imported, so they start
fast. Every subcommand runs inside the one error wrapper (``errors.user_errors``): a user mistake is one ``error:``
line and exit status 2.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

__all__ = ["COMMANDS", "main"]

# The subcommands outside the Lightning CLI: name -> (module with run(argv), help line shown by --help).
COMMANDS = {
    "ask": ("ask", "Answer questions with a trained model (an export folder or a .ckpt of fit)."),
    "export": ("export", "Export a checkpoint as a Hugging Face model folder with its settings and model card."),
}


def main(argv: Optional[list[str]] = None) -> None:
    """Dispatch one command line (None: ``sys.argv``); the ``qa-lightning`` console script."""
    from .errors import user_errors
    from .hf import env_defaults

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] and args[0] in COMMANDS:
        env_defaults()
        with user_errors():
            importlib.import_module(f"qa_lightning.{COMMANDS[args[0]][0]}").run(args[1:])
        return
    from .cli import main as cli_main

    cli_main(argv)  # None: LightningCLI reads sys.argv itself (it warns when given both)


if __name__ == "__main__":
    main()
