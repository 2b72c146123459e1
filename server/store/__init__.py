"""The server's storage boundary: one protocol per store (``protocols.py``), the values they hold
(``records.py``), and their embedded implementation in SQLite (``sqlite/``)."""
