"""The login session: who we are (config and unlocked secrets), the connection, the clock, and
the challenge-response login that gives the connection its token."""

from __future__ import annotations

from typing import Any

from client.api import Api
from client.clock import Clock
from client.home import Config, Home, Secrets
from vault.auth import sign_login
from vault.errors import DeviceRevoked
from vault.keys import DeviceKeys
from vault.wire.schemas import Challenge, ChallengeRequest, LoginRequest, LoginToken

REVOKED_NEXT = ("work from another of your devices, or set this machine up again with your recovery key "
                "(`mvault recover` in a new MVAULT_HOME); if you did not revoke it, tell your Security Team")


class Session:
    """One member's device, logged in to one server for one command."""

    def __init__(self, home: Home, secrets: Secrets, api: Api, clock: Clock) -> None:
        self.home = home
        self.cfg: Config = home.config()
        self.secrets = secrets
        self.api = api
        self.clock = clock
        self.warnings: list[str] = []  # told to the member after the command (the CLI prints them)
        # The audit log pin as it was before this command's log check moved it on (client/restore.py judges a
        # restore acceptance against what this device had accepted before this command).
        self.log_before: dict[str, Any] | None = None
        # (size, root hex) of the checkpoint this command's log check accepted (``keep_log_pin`` puts back only that)
        self.log_accepted: tuple[int, str] | None = None

    @property
    def device(self) -> DeviceKeys:
        return self.secrets.device

    @property
    def me(self) -> str:
        return self.cfg.member_id

    def now(self) -> int:
        return self.clock.now()

    async def login(self) -> None:
        try:
            self.api.token = (await log_in(self.api, self.me, self.device, self.now())).token
        except DeviceRevoked as e:  # the server's sentence says which device and when; this says what to do
            raise DeviceRevoked(f"{e.message}; {REVOKED_NEXT}") from e


async def log_in(api: Api, member: str, device: DeviceKeys, now: int, show_key: bool = False) -> LoginToken:
    """The challenge-response login of ``device`` as ``member`` (``show_key``: the device's public key goes
    along, for a device not yet added); a refused login is an ``AuthError``."""
    ch = await api.post("/api/v1/auth/challenge", ChallengeRequest(member, device.device_id), Challenge)
    statement, sig = sign_login(device, origin=api.url, nonce=ch.nonce, member=member, time=now)
    body = LoginRequest(statement, sig, device.sign_public) if show_key else LoginRequest(statement, sig)
    return await api.post("/api/v1/auth/login", body, LoginToken)
