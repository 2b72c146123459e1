"""Logging in, and what callers without a session may cost: the challenge, the login, and the
per-address limits in front of every route that needs no session (``server/access.py`` holds
the per-address middleware, ``server/guard.py`` the limiters and the per-minute refusal summary,
``server/recorder.py`` records the outcomes).

Until a login's signature verifies, the caller is nobody: nothing it is told and no work the server
does depends on what the server knows of the ids it names (see SECURITY.md, "What ids tell a caller
without a session").
"""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from server.access import closed_refusal, cut_off, removed, revoked_refusal
from server.context import (
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
    body = await read_body(request, schemas.ChallengeRequest)
    member_id, device_id = body.member, body.device
    nonce = new_nonce()
    expires = now_of(request) + request.app[CONFIG].nonce_ttl
    await _purge_now_and_then(request.app, now_of(request))
    await request.app[LOGINS].add_nonce(nonce_hash(nonce), member_id, device_id, expires)
    return answer(schemas.Challenge(nonce=nonce, expires=expires))


async def _purge_now_and_then(app: web.Application, now: float) -> None:
    """Expired nonces, sessions and link slots are refused where they are read; deleting them is
    housekeeping, done at most once a minute (on every challenge it cost a table scan per login)."""
    if now - app[LAST_PURGE][0] >= PURGE_EVERY:
        app[LAST_PURGE][0] = now
        await app[LOGINS].purge_expired(now)
        await app[GUARD].purge(now)


LOGIN_REFUSED = "login refused: the signature does not verify for this member and device"
# Checked instead of a device key the server does not have, so that every refused login does the same work.
_NO_KEY = DeviceKeys.generate().sign_public


async def login(request: web.Request) -> web.Response:
    """Until the signature verifies the caller is nobody: its failures are counted against its address
    (never against the device it names) and answered without telling what the server knows of the ids.
    Once it verifies, the caller holds the device key and may learn why it still cannot log in."""
    body = await read_body(request, schemas.LoginRequest)
    statement = AuthStatement.parse(body.statement)
    sig = body.sig
    # Optional: the signing key itself. A device that is not (yet) in its member's chain shows it, so
    # that its own failed login is no guess (a new device waiting to be added polls this way).
    own = None if isinstance(body.key, UnsetType) else body.key
    app = request.app
    now = now_of(request)
    taken = await app[LOGINS].take_nonce(nonce_hash(statement.nonce))
    if taken is None:
        raise AuthError("login challenge unknown or already used; ask for a new one")
    member_id, device_id, expires = taken
    directory = app[DIRECTORY]
    member = directory.members.get(member_id)
    device = member.devices.get(device_id) if member is not None else None
    if device is not None:
        request[NAMED_DEVICE] = device_id  # counted in the refusal summary if this login fails
    if expires <= now:
        raise AuthError("login challenge expired; ask for a new one")
    if (statement.member, statement.device) != (member_id, device_id):
        raise AuthError("login statement names another member or device")
    expected_origin = app[CONFIG].public_url or f"https://{request.host}"
    if statement.origin.rstrip("/") != expected_origin.rstrip("/"):
        raise AuthError(f"login statement is for another server ({statement.origin})")
    if abs(statement.time - now) > app[CONFIG].clock_skew:
        raise AuthError(f"your clock is off: this device's clock {clock_difference(statement.time, int(now))} "
                        f"(server time {int(now)}, allowed difference {int(app[CONFIG].clock_skew)} s); set the clock "
                        "right and retry")
    holder = device is None and own is not None and len(own) == 32 and device_id_for(own) == device_id
    try:
        verify_login(device.sign_public if device is not None else own if holder and own else _NO_KEY,
                     statement, sig)
        verified = device is not None
    except VaultError:
        verified = holder = False
    if holder:  # the caller holds the key of a device id that names no device of that member
        request[KEY_HOLDER] = True
        raise AuthError("this device is not an active device of that member (not added yet?)")
    if not verified:
        raise AuthError(LOGIN_REFUSED)
    # The caller holds this device's key: from here it is accountable, and told why it is refused.
    note(request, "auth.login", actor=member_id, device=device_id)
    assert device is not None
    if device.revoked is not None:
        raise revoked_refusal(device)
    cut_off(directory, member_id, device_id, int(now))
    if removed(directory, member_id):
        raise AuthError("this member was removed from the organization")
    check_guest(directory, member_id, int(now))
    shut = closed_refusal(directory)
    if shut is not None:
        raise shut
    token = new_token()
    session_expires = now + app[CONFIG].session_ttl
    await app[LOGINS].add_session(token_hash(token), member_id, device_id, session_expires)
    return answer(schemas.LoginToken(token=token, expires=session_expires))


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "challenge": challenge, "login": login,
}
