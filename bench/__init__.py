"""Benchmarks of qa_lightning against the reference recipe, outside the library: ``python -m bench`` from the
repository root (see bench/README.md). Imports the test oracle as ``tests.reference``; nothing in ``qa_lightning/``
imports from here."""
