"""The login session: who we are (config and unlocked secrets), the connection, the clock, and
the challenge-response login that gives the connection its token."""

from __future__ import annotations

from client.api import Api
from client.clock import Clock
from client.home import Config, Home, Secrets
from vault.auth import sign_login
from vault.keys import DeviceKeys
from vault.wire64 import b64, unb64_answer


class Session:
    """One member's device, logged in to one server for one command."""

    def __init__(self, home: Home, secrets: Secrets, api: Api, clock: Clock) -> None:
        self.home = home
        self.cfg: Config = home.config()
        self.secrets = secrets
        self.api = api
        self.clock = clock
        self.warnings: list[str] = []  # told to the member after the command (the CLI prints them)

    @property
    def device(self) -> DeviceKeys:
        return self.secrets.device

    @property
    def me(self) -> str:
        return self.cfg.member_id

    def now(self) -> int:
        return self.clock.now()

    async def login(self) -> None:
        ch = await self.api.post("/api/v1/auth/challenge", {"member": self.me, "device": self.device.device_id})
        statement, sig = sign_login(self.device, origin=self.api.url, nonce=unb64_answer(ch["nonce"]), member=self.me,
                                    time=self.now())
        res = await self.api.post("/api/v1/auth/login", {"statement": b64(statement), "sig": b64(sig)})
        self.api.token = str(res["token"])
