"""``mvault``, the member's command line: the entry point is ``client.cli.main:main``, shared helpers are in
``client.cli._common``, and there is one module per command group, imported only when one of its commands runs
(``client.cli.main.COMMANDS`` names each command's module and short help)."""
