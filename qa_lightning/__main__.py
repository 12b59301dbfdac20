"""Entry point: ``python -m qa_lightning fit|validate|test|predict|ask [--config FILE] [--help]``.

``ask`` (answer questions with a trained model, ``ask.py``) is dispatched before the Lightning CLI is imported, so
it starts fast; everything else goes to ``cli.main``.
"""

import sys

ASK_HINT = ("\nAlso: python -m qa_lightning ask --model EXPORT_DIR --question ... --context ...   answer questions "
            "with a trained model (see `python -m qa_lightning ask --help`)")


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["ask"]:
        from .ask import main as ask_main

        ask_main(argv[1:])
        return
    from .cli import main as cli_main

    if argv in (["-h"], ["--help"]):
        try:
            cli_main(argv)
        finally:  # LightningCLI prints its help and exits
            print(ASK_HINT)
        return
    cli_main()


if __name__ == "__main__":
    main()
