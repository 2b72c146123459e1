"""Logging in, and what callers without a session may cost: the challenge, the login, and the
per-address limits in front of every route that needs no session (``server/access.py`` holds
the per-address middleware, ``server/guard.py`` the limiters and the per-minute refusal summary,
``server/recorder.py`` records the outcomes).

Until a login's signature verifies, the caller is nobody: nothing it is told and no work the server
does depends on what the server knows of the ids it names (see SECURITY.md, "What ids tell a caller
without a session").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from msgspec import UnsetType

from server.access import closed_refusal, cut_off, gate_public, removed, revoked_refusal
from server.context import (
    CHALLENGE,
    CONFIG,
    DIRECTORY,
    GUARD,
    KEY_HOLDER,
    LAST_PURGE,
    LOGINS,
    NAMED_DEVICE,
    PURGE_EVERY,
    Handler,
    now_of,
)
from server.guests import check_guest
from server.http import answer, read_body
from server.links import clock_difference
from server.notes import note
from vault.auth import AuthStatement, new_nonce, new_token, nonce_hash, token_hash, verify_login
from vault.errors import AuthError, VaultError
from vault.keys import DeviceKeys, device_id_for
from vault.wire import schemas


async def challenge(request: web.Request) -> web.Response:
    """A nonce for any (member, device), known or not, active or not: the answer and the work are the
    same for all, so the ids alone tell nothing. A nonce for a device that cannot log in never succeeds."""
    try:
        body = await read_body(request, schemas.ChallengeRequest)
    except BaseException:
        await gate_public(request, CHALLENGE)  # a refused body spends its token too (and a throttled source: 429)
        raise
    member_id, device_id = body.member, body.device
    nonce = new_nonce()
    expires = now_of(request) + request.app[CONFIG].nonce_ttl
    issued = (nonce_hash(nonce), member_id, device_id, expires)
    # The source's budget and block, and the nonce stored if they let the challenge through: one statement on
    # PostgreSQL (issue 19, session 19); on SQLite the nonce is this process's to keep.
    gate = await gate_public(request, CHALLENGE, issued)
    await _purge_now_and_then(request.app, now_of(request))
    if not gate.nonce_stored:
        await request.app[LOGINS].add_nonce(*issued)
    return answer(schemas.Challenge(nonce=nonce, expires=expires))


async def _purge_now_and_then(app: web.Application, now: float) -> None:
    """Expired nonces, sessions and link slots are refused where they are read; deleting them is
    housekeeping, done at most once a minute (on every challenge it cost a table scan per login)."""
    if now - app[LAST_PURGE][0] >= PURGE_EVERY:
        app[LAST_PURGE][0] = now
        await app[LOGINS].purge_expired(now)
        await app[GUARD].purge(now)


LOGIN_REFUSED = "login refused: the signature does not verify for this member and device"
USED = "login challenge unknown or already used; ask for a new one"
# Checked instead of a device key the server does not have, so that every refused login does the same work.
_NO_KEY = DeviceKeys.generate().sign_public


async def login(request: web.Request) -> web.Response:
    """Until the signature verifies the caller is nobody: its failures are counted against its address
    (never against the device it names) and answered without telling what the server knows of the ids.
    Once it verifies, the caller holds the device key and may learn why it still cannot log in.

    The login is judged first for the member and device its statement names (``_judge_login``: nothing recorded
    yet), then one storage call takes the nonce and, if the login is good and the nonce is the one issued to
    that member and device and not expired, stores the session in the same transaction (PostgreSQL: one
    statement, one round trip; issue 19, session 19). Only then is the judgment's outcome told, in the order it
    always was: an unknown or used nonce, an expired one, another member's or device's, then the statement's
    own faults; a refused login's nonce is used up all the same."""
    body = await read_body(request, schemas.LoginRequest)
    statement = AuthStatement.parse(body.statement)
    # Optional: the signing key itself. A device that is not (yet) in its member's chain shows it, so
    # that its own failed login is no guess (a new device waiting to be added polls this way).
    own = None if isinstance(body.key, UnsetType) else body.key
    app, now = request.app, now_of(request)
    nonce = nonce_hash(statement.nonce)
    try:
        judged = _judge_login(request, statement, body.sig, own, now)
    except BaseException:
        await asyncio.shield(app[LOGINS].take_nonce(nonce))  # a login that fails uses its nonce up as well
        raise
    token, session_expires = new_token(), now + app[CONFIG].session_ttl
    asked = None if judged.refusal is not None else (token_hash(token), statement.member, statement.device,
                                                     session_expires)
    # shielded: a refused login uses its nonce up even if the caller goes away meanwhile
    taken = await asyncio.shield(app[LOGINS].take_nonce_login(nonce, now, asked))
    if taken is None:
        raise AuthError(USED)  # unknown, or another login with this nonce took it first
    member = app[DIRECTORY].members.get(taken.member)
    if member is not None and member.devices.get(taken.device) is not None:
        request[NAMED_DEVICE] = taken.device  # counted in the refusal summary if this login fails
    if taken.expires <= now:
        raise AuthError("login challenge expired; ask for a new one")
    if (statement.member, statement.device) != (taken.member, taken.device):
        raise AuthError("login statement names another member or device")
    if judged.key_holder:
        request[KEY_HOLDER] = True
    if judged.verified:  # the caller holds this device's key: from here it is accountable
        note(request, "auth.login", actor=taken.member, device=taken.device)
    if judged.refusal is not None:
        raise judged.refusal
    if not taken.session_stored:  # cannot happen: the store checked what was checked here
        raise AuthError(USED)
    return answer(schemas.LoginToken(token=token, expires=session_expires))


@dataclass(frozen=True)
class _Judged:
    refusal: VaultError | None  # None: the login is good
    verified: bool = False  # the signature verified for an active device of that member (``auth.login`` noted)
    key_holder: bool = False  # the caller holds the key of a device id that names no device of that member


def _judge_login(request: web.Request, statement: AuthStatement, sig: bytes, own: bytes | None,
                 now: float) -> _Judged:
    """Whether the login is good for the member and device its statement names, recording nothing (``login``
    tells the outcome once the nonce is known to be theirs)."""
    app = request.app
    member_id, device_id = statement.member, statement.device
    directory = app[DIRECTORY]
    member = directory.members.get(member_id)
    device = member.devices.get(device_id) if member is not None else None
    expected_origin = app[CONFIG].public_url or f"https://{request.host}"
    if statement.origin.rstrip("/") != expected_origin.rstrip("/"):
        return _Judged(AuthError(f"login statement is for another server ({statement.origin})"))
    if abs(statement.time - now) > app[CONFIG].clock_skew:
        return _Judged(AuthError(
            f"your clock is off: this device's clock {clock_difference(statement.time, int(now))} "
            f"(server time {int(now)}, allowed difference {int(app[CONFIG].clock_skew)} s); set the clock "
            "right and retry"))
    holder = device is None and own is not None and len(own) == 32 and device_id_for(own) == device_id
    try:
        verify_login(device.sign_public if device is not None else own if holder and own else _NO_KEY,
                     statement, sig)
        verified = device is not None
    except VaultError:
        verified = holder = False
    if holder:
        return _Judged(AuthError("this device is not an active device of that member (not added yet?)"),
                       key_holder=True)
    if not verified:
        return _Judged(AuthError(LOGIN_REFUSED))
    assert device is not None
    if device.revoked is not None:
        return _Judged(revoked_refusal(device), verified=True)
    try:
        cut_off(directory, member_id, device_id, int(now))
        if removed(directory, member_id):
            raise AuthError("this member was removed from the organization")
        check_guest(directory, member_id, int(now))
    except VaultError as e:
        return _Judged(e, verified=True)
    return _Judged(closed_refusal(directory), verified=True)


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "challenge": challenge, "login": login,
}
