"""The embedded backend: ``vault.py`` (``vault.db``: chains, boxes, documents and blobs, login,
device-link slots, threads) and ``audit.py`` (``audit.db``: the audit log)."""
