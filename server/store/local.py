"""What a store keeps in its own process's memory: login nonces, and a cache of sessions found.

Login nonces live in memory: single-use and valid for a minute, they need no disk. A restart forgets
them all, which can only make a pending login ask for a new challenge (never accept a used one). At most
``MAX_NONCES`` are held (a flood of challenges evicts the oldest). Only the SQLite backend keeps them here: one
process serves an SQLite data directory (``run --workers`` refuses more); PostgreSQL keeps them in the database.

Sessions are never changed once stored, only expired: a session found is kept (the caller checks its
expiry), which saves one query per request.
"""

from __future__ import annotations

from collections import OrderedDict

from server.store.records import AuthSession, TakenNonce

MAX_NONCES = 100_000
MAX_SESSIONS = 10_000


class Nonces:
    def __init__(self) -> None:
        self._held: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()  # hash -> (member, device, expires)

    def add(self, nonce: bytes, member: str, device: str, expires: float) -> None:
        while len(self._held) >= MAX_NONCES:  # the oldest first (expired ones also go every minute)
            self._held.popitem(last=False)
        self._held[nonce] = (member, device, expires)

    def take(self, nonce: bytes) -> tuple[str, str, float] | None:
        """A nonce can be taken once."""
        return self._held.pop(nonce, None)

    def purge(self, now: float) -> None:
        self._held = OrderedDict((n, v) for n, v in self._held.items() if v[2] >= now)


class SessionCache:
    def __init__(self) -> None:
        self._found: dict[bytes, AuthSession] = {}  # token hash -> session

    def get(self, token: bytes) -> AuthSession | None:
        return self._found.get(token)

    def keep(self, token: bytes, session: AuthSession) -> AuthSession:
        if len(self._found) >= MAX_SESSIONS:
            self._found.clear()
        self._found[token] = session
        return session

    def purge(self, now: float) -> None:
        self._found = {t: v for t, v in self._found.items() if v.expires >= now}


class LocalLogins:
    """``AuthStore``'s nonces in this process's memory (``Nonces``), for the SQLite backend; its class stores the
    sessions (``add_session``)."""

    _nonces: Nonces

    async def add_session(self, token: bytes, member: str, device: str, expires: float) -> None:
        raise NotImplementedError

    async def add_nonce(self, nonce: bytes, member: str, device: str, expires: float) -> None:
        self._nonces.add(nonce, member, device, expires)

    async def take_nonce(self, nonce: bytes) -> tuple[str, str, float] | None:
        return self._nonces.take(nonce)

    async def take_nonce_login(self, nonce: bytes, now: float,
                               session: tuple[bytes, str, str, float] | None) -> TakenNonce | None:
        found = self._nonces.take(nonce)
        if found is None:
            return None
        member, device, expires = found
        stored = session is not None and (session[1], session[2]) == (member, device) and expires > now
        if stored:
            assert session is not None
            await self.add_session(*session)
        return TakenNonce(member, device, expires, stored)
