"""Member Vault server: aiohttp app, storage, TLS and the mvault-server CLI."""
