"""``mvault``, the member's command line: ``main`` (the ``mvault`` entry point) lives in
``client.cli.main``, shared helpers in ``client.cli._common``, one module per command group."""

from client.cli.main import main

__all__ = ["main"]
