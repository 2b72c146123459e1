"""The PostgreSQL backend (asyncpg): ``schema.py`` (migrations), ``vault.py`` and ``threads.py`` (``Storage``),
``audit.py`` (``AuditLog``), ``usage.py`` (quotas). Blobs stay on the file system (``server/store/blobs.py``)."""
