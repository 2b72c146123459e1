"""The SQLite backend's tables (``server/store/sqlite/vault.py``; ``server/pgdump.py`` reads them too)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS links (
    chain TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, wire BLOB NOT NULL,
    time INTEGER NOT NULL, PRIMARY KEY (chain, seq));
CREATE TABLE IF NOT EXISTS puk_boxes (
    member TEXT NOT NULL, puk_gen INTEGER NOT NULL, device TEXT NOT NULL, box BLOB NOT NULL,
    PRIMARY KEY (member, puk_gen, device));
CREATE TABLE IF NOT EXISTS team_boxes (
    team TEXT NOT NULL, gen INTEGER NOT NULL, member TEXT NOT NULL, box BLOB NOT NULL,
    PRIMARY KEY (team, gen, member));
CREATE TABLE IF NOT EXISTS versions (
    vid TEXT PRIMARY KEY, team TEXT NOT NULL, doc TEXT NOT NULL, seq INTEGER NOT NULL,
    record BLOB NOT NULL, blob TEXT NOT NULL, body_len INTEGER NOT NULL, created INTEGER NOT NULL,
    UNIQUE (team, doc, seq));
CREATE TABLE IF NOT EXISTS link_slots (
    slot TEXT PRIMARY KEY, member TEXT NOT NULL, expires REAL NOT NULL, payload BLOB);
CREATE TABLE IF NOT EXISTS sessions (
    token BLOB PRIMARY KEY, member TEXT NOT NULL, device TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
DROP TABLE IF EXISTS nonces;
CREATE INDEX IF NOT EXISTS link_slots_expires ON link_slots (expires);
CREATE TABLE IF NOT EXISTS threads (
    team TEXT NOT NULL, thread TEXT NOT NULL, record BLOB NOT NULL, expire INTEGER NOT NULL,
    created INTEGER NOT NULL, next_pos INTEGER NOT NULL, last_time INTEGER NOT NULL,
    PRIMARY KEY (team, thread));
CREATE TABLE IF NOT EXISTS messages (
    team TEXT NOT NULL, thread TEXT NOT NULL, pos INTEGER NOT NULL, mid TEXT NOT NULL, device TEXT NOT NULL,
    seq INTEGER NOT NULL, time INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (team, thread, pos), UNIQUE (team, thread, device, seq));
CREATE TABLE IF NOT EXISTS unlogged_links (
    hash BLOB PRIMARY KEY, chain TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS thread_senders (
    team TEXT NOT NULL, thread TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL, mid TEXT NOT NULL,
    time INTEGER NOT NULL, PRIMARY KEY (team, thread, device));
"""
