"""Entry point: ``python -m qa_lightning fit|validate|test|predict [--config FILE] [--help]``."""

from .cli import main

if __name__ == "__main__":
    main()
