"""``python -m qa_lightning {fit,validate,test,predict,ask,export}``, also the ``qa-lightning`` script: ``ask`` and
``export`` are dispatched here, before Lightning is imported; the others go to the LightningCLI (``cli.py``), whose
``--help`` lists all six. Each runs inside ``errors.user_errors`` (a user mistake: one ``error:`` line, exit 2).
"""

from __future__ import annotations

import importlib
import sys

# The subcommands outside the Lightning CLI (each module has run(argv)) and their help lines.
COMMANDS = {"ask": "Answer questions with a trained model (an export folder or a .ckpt of fit).",
            "export": "Export a checkpoint as a Hugging Face model folder with its settings and model card."}


def main(argv: list[str] | None = None) -> None:
    """Run one command line (None: ``sys.argv``); the ``qa-lightning`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] and args[0] in COMMANDS:
        from .errors import user_errors
        from .hf import env_defaults

        env_defaults()
        with user_errors():
            importlib.import_module(f"qa_lightning.{args[0]}").run(args[1:])
        return
    from .cli import main as cli_main

    cli_main(argv)  # None: LightningCLI reads sys.argv itself (it warns when given both)


if __name__ == "__main__":
    main()
