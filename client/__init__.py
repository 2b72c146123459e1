"""Member Vault client: API client, local state and the mvault CLI."""
