"""``mvault``, the member's command line: the entry point is ``client.cli.fast:main`` (a one-pass
sync answered by the folder's watcher, else ``client.cli.main:main``), shared helpers are in
``client.cli._common``, and there is one module per command group, imported only when one of its commands runs
(``client.cli.main.COMMANDS`` names each command's module and short help)."""
