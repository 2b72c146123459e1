"""The client's state directory (``MVAULT_HOME``, default ``~/.mvault``).

    config.json    server URL, pinned certificate fingerprint, pinned org root, own ids
    keystore.bin   device and PUK secrets under the passphrase (vault.keystore)
    pins.json      highest chain heads and document versions seen (rollback detection)
    session.bin    optional unlock session (key wrapped under MVAULT_SESSION)

Files are written atomically (temp + fsync + rename) with mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import click

from vault import keystore
from vault.encoding import Fields
from vault.errors import KeystoreError, VaultError
from vault.keys import DeviceKeys, PukKeys

SESSION_MINUTES = 5


def default_home() -> Path:
    return Path(os.environ.get("MVAULT_HOME") or Path.home() / ".mvault")


def atomic_write(path: Path, data: bytes) -> None:
    """Write, fsync, rename: readers see the old file or the new one, never a part. The temporary
    name is unique, so two processes writing the same file do not trip over each other."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Config:
    url: str
    cert_fp: str
    org_root: str
    member_id: str
    device_id: str
    name: str


@dataclass
class Pins:
    chains: dict[str, list[Any]] = field(default_factory=dict)  # chain id -> [seq, head hex]
    docs: dict[str, list[Any]] = field(default_factory=dict)  # team/doc -> [seq, vid]
    keys: dict[str, str] = field(default_factory=dict)  # member -> key fingerprint last seen
    verified: dict[str, str] = field(default_factory=dict)  # member -> key fingerprint verified in person
    log: dict[str, Any] = field(default_factory=dict)  # last accepted audit checkpoint: size, root, time, log_key


@dataclass
class Secrets:
    device: DeviceKeys
    puks: dict[int, PukKeys]

    def to_value(self) -> dict[str, Any]:
        return {
            "device": {"sign": self.device.sign_seed, "box": self.device.box_seed},
            "puks": {str(g): k.seed for g, k in self.puks.items()},
        }

    @classmethod
    def from_value(cls, value: Any) -> Secrets:
        f = Fields(value, "keystore secrets")
        d = f.dict_("device")
        puks = f.dict_("puks")
        return cls(
            DeviceKeys(d.bytes_("sign", 32), d.bytes_("box", 32)),
            {int(g): PukKeys(int(g), puks.bytes_(g, 32)) for g in puks.raw},
        )


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None
        self._salt: bytes | None = None
        self._params: keystore.KdfParams | None = None

    @property
    def exists(self) -> bool:
        return (self.path / "config.json").exists()

    def config(self) -> Config:
        try:
            return Config(**json.loads((self.path / "config.json").read_text()))
        except FileNotFoundError as e:
            raise VaultError(f"no Member Vault identity in {self.path}; run `mvault join INVITE --name NAME`") from e
        except (ValueError, TypeError) as e:
            raise VaultError(f"{self.path / 'config.json'} is damaged") from e

    def save_config(self, cfg: Config) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path / "config.json", json.dumps(asdict(cfg), indent=2).encode())

    def pins(self) -> Pins:
        try:
            raw = json.loads((self.path / "pins.json").read_text())
            return Pins(raw.get("chains", {}), raw.get("docs", {}), raw.get("keys", {}), raw.get("verified", {}),
                        raw.get("log", {}))
        except FileNotFoundError:
            return Pins()
        except ValueError as e:
            raise VaultError(f"{self.path / 'pins.json'} is damaged") from e

    def save_pins(self, pins: Pins) -> None:
        # Pins hold only plain dicts and lists: no dataclasses.asdict (a deep copy of every entry).
        atomic_write(self.path / "pins.json", json.dumps({f.name: getattr(pins, f.name) for f in fields(pins)},
                                                         indent=1).encode())

    # -- keystore -----------------------------------------------------------------------------

    def create_keystore(self, secrets: Secrets, passphrase: str) -> None:
        if len(passphrase) < 8:
            raise KeystoreError("passphrase too short: use at least 8 characters")
        salt = keystore.new_salt()
        params = keystore.KdfParams()
        key = keystore.derive_key(passphrase, salt, params)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path / "keystore.bin", keystore.seal_keystore(secrets.to_value(), key, salt, params))
        self._key, self._salt, self._params = key, salt, params

    def keystore_params(self) -> keystore.KdfParams:
        header, _ = keystore.parse_keystore((self.path / "keystore.bin").read_bytes())
        return header.params

    def unlock(self) -> Secrets:
        """Open the keystore: unlock session, passphrase file, or an interactive prompt."""
        try:
            blob = (self.path / "keystore.bin").read_bytes()
        except FileNotFoundError as e:
            raise KeystoreError(f"no keystore in {self.path}; run `mvault join` first") from e
        header, _ = keystore.parse_keystore(blob)
        self._salt, self._params = header.salt, header.params
        session = os.environ.get("MVAULT_SESSION")
        session_file = self.path / "session.bin"
        if session and session_file.exists():
            try:
                key = keystore.open_session(session_file.read_bytes(), _session_secret(session), int(time.time()))
                value = keystore.open_with_key(blob, key)
                self._key = key
                return Secrets.from_value(value)
            except KeystoreError:
                session_file.unlink(missing_ok=True)
        value, key, _ = keystore.open_keystore(blob, read_passphrase())
        self._key = key
        return Secrets.from_value(value)

    def forget(self) -> None:
        """Undo a failed join, device link or recovery: remove every file it wrote."""
        for name in ("config.json", "keystore.bin", "pins.json", "session.bin"):
            (self.path / name).unlink(missing_ok=True)

    def save_secrets(self, secrets: Secrets) -> None:
        assert self._key is not None and self._salt is not None and self._params is not None
        atomic_write(self.path / "keystore.bin",
                     keystore.seal_keystore(secrets.to_value(), self._key, self._salt, self._params))

    def start_session(self, minutes: int) -> tuple[str, int]:
        assert self._key is not None
        import base64

        secret = keystore.new_session_secret()
        expires = int(time.time()) + minutes * 60
        atomic_write(self.path / "session.bin", keystore.seal_session(self._key, secret, expires))
        return base64.urlsafe_b64encode(secret).decode().rstrip("="), expires

    def end_session(self) -> bool:
        f = self.path / "session.bin"
        existed = f.exists()
        f.unlink(missing_ok=True)
        return existed


def _session_secret(value: str) -> bytes:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise KeystoreError("MVAULT_SESSION is damaged; run `mvault unlock` again") from e
    if len(raw) != 32:
        raise KeystoreError("MVAULT_SESSION is damaged; run `mvault unlock` again")
    return raw


def read_passphrase(confirm: bool = False) -> str:
    path = os.environ.get("MVAULT_PASSPHRASE_FILE")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise KeystoreError(f"cannot read MVAULT_PASSPHRASE_FILE: {e.strerror}") from e
        return text.rstrip("\r\n")
    if not os.isatty(0):
        raise KeystoreError("no passphrase: set MVAULT_PASSPHRASE_FILE or run in a terminal")
    return str(click.prompt("passphrase", hide_input=True, confirmation_prompt=confirm, err=True))
