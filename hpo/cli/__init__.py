"""The ``hpo`` command line: one module per group of commands; ``main`` is the entry point."""

from hpo.cli.main import cli, main

__all__ = ["cli", "main"]
