"""The client's state directory (``MVAULT_HOME``, default ``~/.mvault``; mode 0700).

    keystore.bin   device and PUK secrets under the passphrase (vault.keystore)
    config.bin     sealed: server URL, pinned certificate fingerprint, pinned org root, own ids
    pins.bin       sealed: highest chain heads and document versions seen (rollback detection),
                   key fingerprints seen and verified in person, the last audit checkpoint
    pins.lock      held while pins.bin is merged and written: each save is a merge (client/pinmerge.py)
    threads/       sealed thread caches (client.threads)
    agent.sock     while unlocked: the unlock agent's socket (client.agent); no secret on disk

"Sealed" is ``vault.localstate.seal_local`` under the key derived from the device's signing seed,
which is inside the keystore: nothing in this directory is readable before the keystore is opened.

Every keystore this version writes says ``"sealed": true`` (authenticated with the secrets): this home's
config and pins live in ``config.bin``/``pins.bin`` only, and both must be there. Only a keystore without
it (written by an older version) lets the first unlock seal a plaintext ``config.json``/``pins.json``
and remove it (and the old ``session.bin``, the keystore key wrapped on disk); that unlock then marks the
keystore. On a marked home a plaintext config or pins file, or a missing sealed one, is refused: someone
who had the disk once could otherwise plant the pins or the server of their choice.

Files are written atomically (temp + fsync + rename) with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import msgspec

from client import agent, pinmerge
from client.homepath import home_dir
from client.passphrase import MIN_LENGTH, Passphrases
from vault import keystore, localstate
from vault.encoding import Fields
from vault.errors import DecryptionFailed, KeystoreError, VaultError
from vault.fileio import atomic_write, locked
from vault.keys import DeviceKeys, PukKeys
from vault.pin import Pin

SESSION_MINUTES = 5
CONFIG, PINS, LEGACY_CONFIG, LEGACY_PINS = "config.bin", "pins.bin", "config.json", "pins.json"
PINS_LOCK = "pins.lock"  # held while pins.bin is merged and written (save_pins, lower_pins, change_pins)
KEYSTORE = "keystore.bin"
KEYSTORE_LOCK = "keystore.lock"  # held while the keystore is re-sealed (save_secrets, change_passphrase)
PAD_MIN = 4096


def default_home() -> Path:
    return Path(home_dir())


@dataclass
class Config:
    url: str
    cert_fp: str
    org_root: str
    member_id: str
    device_id: str
    name: str
    pin_kind: str = "cert"  # vault.pin: cert_fp holds its value (empty for webpki); absent in older config.bin
    # seq of the org.server link whose place this client uses (0: none, the invite's place); it never follows an
    # older one (client/moves.py)
    server_seq: int = 0

    @property
    def pin(self) -> Pin:
        return Pin(self.pin_kind, bytes.fromhex(self.cert_fp))


@dataclass
class Pins:
    chains: dict[str, list[Any]] = field(default_factory=dict)  # chain id -> [seq, head hex]
    docs: dict[str, list[Any]] = field(default_factory=dict)  # team/doc -> [seq, vid]
    keys: dict[str, str] = field(default_factory=dict)  # member -> key fingerprint last seen
    verified: dict[str, str] = field(default_factory=dict)  # member -> key fingerprint verified in person
    log: dict[str, Any] = field(default_factory=dict)  # last accepted audit checkpoint: size, root, time, log_key
    # Who may sign a restore acceptance, as of the newest verified org state: member -> active device ids
    signers: dict[str, list[str]] = field(default_factory=dict)
    # member -> [org chain seq, that member's chain seq] its ``signers`` list was computed at (client/pinmerge.py: a
    # list computed from older chain state never replaces a newer one); absent in pins older versions wrote
    signers_at: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Secrets:
    device: DeviceKeys
    puks: dict[int, PukKeys]
    # As read from the keystore: False only in one an older version wrote (its home may hold plaintext state to
    # migrate). Every keystore this version writes is marked, whatever this says (``to_value``).
    sealed: bool = True
    # coalition space name -> this organization's coalition key seed for it (client/coalition.py; NCC devices)
    coalitions: dict[str, bytes] = field(default_factory=dict)

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "device": {"sign": self.device.sign_seed, "box": self.device.box_seed},
            "puks": {str(g): k.seed for g, k in self.puks.items()},
            "sealed": True,
        }
        if self.coalitions:  # absent otherwise: a keystore without coalitions reads as before
            value["coalitions"] = dict(self.coalitions)
        return value

    @classmethod
    def from_value(cls, value: Any) -> Secrets:
        f = Fields(value, "keystore secrets")
        d = f.dict_("device")
        puks = f.dict_("puks")
        return cls(
            DeviceKeys(d.bytes_("sign", 32), d.bytes_("box", 32)),
            {int(g): PukKeys(int(g), puks.bytes_(g, 32)) for g in puks.raw},
            f.has("sealed") and f.bool_("sealed"),
            {n: f.dict_("coalitions").bytes_(n, 32) for n in f.dict_("coalitions").raw} if f.has("coalitions") else {},
        )


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None
        self._salt: bytes | None = None
        self._params: keystore.KdfParams | None = None
        self._local: bytes | None = None  # key of the sealed local state (config, pins), once unlocked
        self._sealed = False  # once unlocked: the keystore says config.bin and pins.bin must exist
        self.passphrases = Passphrases()  # the CLI's --passphrase-command replaces it
        self._by_passphrase = False  # the key was derived from a passphrase here (not taken from an agent)
        # pins.bin as this process last read or wrote it, and its value: a command reads the pins half a dozen
        # times (login, the checkpoint, the view, each batch flush); the same bytes are not opened and parsed again.
        self._pins_seen: tuple[bytes, dict[str, Any]] | None = None
        self.state_prefix = ""  # a coalition space joined as a guest: its own config and pins (client/guestspace.py)

    @property
    def exists(self) -> bool:
        """Whether this home holds an identity (or what is left of one: a keystore whose config.bin is gone
        is not a fresh home, and ``join`` must not overwrite its keys)."""
        return any((self.path / name).exists() for name in (CONFIG, LEGACY_CONFIG, KEYSTORE))

    def require(self) -> None:
        """Raise the "no identity here" error unless this home holds one (no unlocking)."""
        if not self.exists:
            raise VaultError(f"no Member Vault identity in {self.path}; run `mvault join INVITE --name NAME`")

    # -- sealed local state (config.bin, pins.bin) ---------------------------------------------

    def _local_key(self) -> bytes:
        if self._local is None:
            self.unlock()
        assert self._local is not None
        return self._local

    def _read_state(self, name: str) -> Any:
        """The JSON value sealed in ``<name>.bin``, or None if there is no such file."""
        read = self._read_blob(name)
        return None if read is None else self._open_state(name, *read)

    def _read_blob(self, name: str) -> tuple[bytes, bytes] | None:
        """(the key, the sealed bytes of ``<name>.bin``), or None if there is no such file."""
        path = self.path / f"{self.state_prefix}{name}.bin"
        key = self._local_key()  # first: the first unlock may be what migrates the file (and it checks it is there)
        try:
            return key, path.read_bytes()
        except FileNotFoundError:
            if self._sealed:
                raise _missing(path) from None
            return None

    def _open_state(self, name: str, key: bytes, blob: bytes) -> Any:
        path = self.path / f"{self.state_prefix}{name}.bin"
        try:
            data = localstate.open_local(key, self.state_prefix + name, blob)
            if not isinstance(data, bytes):
                raise DecryptionFailed()
            return json.loads(data)
        except (DecryptionFailed, ValueError) as e:
            raise VaultError(f"{path} failed its integrity check (altered, damaged or not this device's); "
                             "refusing to use it") from e

    def _write_state(self, name: str, value: Any) -> bytes:
        """Seal ``value`` into ``<name>.bin`` (atomically); the bytes written."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        blob = localstate.seal_local(self._local_key(), self.state_prefix + name, _padded(value))
        atomic_write(self.path / f"{self.state_prefix}{name}.bin", blob)
        return blob

    def config(self) -> Config:
        self.require()
        raw = self._read_state("config")
        if raw is None:
            raise VaultError(f"no Member Vault identity in {self.path}; run `mvault join INVITE --name NAME`")
        try:
            return Config(**raw)
        except TypeError as e:
            raise VaultError(f"{self.path / CONFIG} is damaged") from e

    def save_config(self, cfg: Config) -> None:
        if not (self.path / CONFIG).exists() and not (self.path / PINS).exists():
            # A new identity (join, device link, recovery): from now on a missing pins file is an attack.
            self._write_state("pins", _pins_value(Pins()))
        self._write_state("config", asdict(cfg))

    def pins(self) -> Pins:
        """The pins as pins.bin holds them now (read again each time: another command may have saved them). Bytes
        identical to those this process last read or wrote are not opened and parsed again (their value is)."""
        read = self._read_blob("pins")
        if read is None:
            raise _missing(self.path / PINS)
        key, blob = read
        if self._pins_seen is not None and self._pins_seen[0] == blob:
            raw = self._pins_seen[1]
        else:
            value = self._open_state("pins", key, blob)
            if not isinstance(value, dict):
                raise VaultError(f"{self.path / PINS} is damaged")
            raw = {f.name: value.get(f.name, {}) for f in fields(Pins)}
            if not all(isinstance(table, dict) for table in raw.values()):
                raise VaultError(f"{self.path / PINS} is damaged")
            self._pins_seen = blob, raw
        return _pins_of(raw)

    def save_pins(self, pins: Pins) -> None:
        """Merge ``pins`` into pins.bin as it is now, under the pins lock (client/pinmerge.py: per entry the further
        state wins, another command's newer pins stay, a fork stops); ``pins`` then holds the merged state. Nothing
        is written (nor locked) when the file holds these very pins already (as this process last read or wrote it,
        unchanged since): a command that checked its pins and moved none writes nothing."""
        value = _pins_value(pins)
        seen = self._pins_seen
        if seen is not None and seen[1] == value:
            with contextlib.suppress(FileNotFoundError):
                if self._pins_path.read_bytes() == seen[0]:
                    return
        read = _read_of(pins)
        self._set(pins, self._update_pins(lambda disk: pinmerge.merged(disk, value, read)))

    def lower_pins(self, pins: Pins, chains: Iterable[str] = (), docs: Iterable[str] = (), log: bool = False) -> None:
        """A deliberate lowering, under the pins lock from a fresh read: the chains and documents named (and the
        log, if ``log``) as ``pins`` holds them (lower, or absent), every other entry merged as ``save_pins`` does
        (``pinmerge.lowered``): a restore acceptance, a dropped pin, the log pin put back after a stop."""
        value, read = _pins_value(pins), _read_of(pins)
        self._set(pins, self._update_pins(lambda disk: pinmerge.lowered(disk, value, chains, docs, log, read)))

    def change_pins(self, change: Callable[[Pins], None]) -> Pins:
        """``change`` applied, under the pins lock, to the pins as the file holds them now, and written as it left
        them (no merge: for what only the caller's own decision moves, such as putting back a log pin it set)."""

        def changed(disk: dict[str, Any] | None) -> dict[str, Any]:
            pins = Pins() if disk is None else _pins_of(disk)
            change(pins)
            return _pins_value(pins)

        return _pins_of(self._update_pins(changed))

    def replace_pins(self, pins: Pins) -> None:
        """Write ``pins`` as they are, under the pins lock: only for a home's first pins (a new guest space, a
        carried visit's scratch state), never over pins a command checked."""
        value = _pins_value(pins)
        self._update_pins(lambda _: value)

    @property
    def _pins_path(self) -> Path:
        return self.path / f"{self.state_prefix}{PINS}"

    def _update_pins(self, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        """Under the pins lock: the file's value now (None if there is no file), ``change``d, written unless the
        same; the value the file holds after."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(self.path / f"{self.state_prefix}{PINS_LOCK}"):
            disk: dict[str, Any] | None = None
            if self._pins_path.exists():
                disk = _pins_value(Home.pins(self))  # the file's (a subclass may keep its own: client/moves.py)
            value = change(disk)
            if value != disk:
                self._pins_seen = self._write_state("pins", value), _pins_value(_pins_of(value))
            return value

    @staticmethod
    def _set(pins: Pins, value: dict[str, Any]) -> None:
        fresh = _pins_of(value)
        for f in fields(Pins):
            setattr(pins, f.name, getattr(fresh, f.name))
        setattr(pins, _READ, value)  # what the next save of ``pins`` merges against

    def _check_sealed(self) -> None:
        """On a home whose keystore is marked sealed: no plaintext state (this version never writes any, and
        a migration removes it before it marks the keystore), and both sealed files present."""
        for name in (LEGACY_CONFIG, LEGACY_PINS):
            if (self.path / name).exists():
                raise VaultError(f"{self.path / name} is a plaintext file in a home whose state is sealed: Member "
                                 "Vault did not write it (someone with access to this disk may have); refusing to "
                                 "use it or anything here until you have checked this device and removed it")
        for name in (CONFIG, PINS):
            if not (self.path / name).exists():
                raise _missing(self.path / name)
        _shred(self.path / "session.bin")

    def _migrate(self) -> None:
        """Seal what an older version left in plaintext (config.json, pins.json), then remove it. Only for a
        keystore an older version wrote: the caller marks it afterwards (a crash before that repeats this)."""
        migrated = False
        for name in ("config", "pins"):
            path = self.path / f"{name}.json"
            try:
                text = path.read_bytes()
            except FileNotFoundError:
                continue
            if not (self.path / f"{name}.bin").exists():  # else a migration was cut short: the sealed copy is it
                try:
                    value = json.loads(text)
                except ValueError as e:
                    raise VaultError(f"{path} is damaged") from e
                self._write_state(name, value)
            _shred(path)
            migrated = True
        if migrated and (self.path / CONFIG).exists() and not (self.path / PINS).exists():
            self._write_state("pins", _pins_value(Pins()))  # a home that never saved pins
        _shred(self.path / "session.bin")  # the old unlock session wrapped the keystore key on disk

    # -- keystore -----------------------------------------------------------------------------

    def create_keystore(self, secrets: Secrets, passphrase: str) -> None:
        if len(passphrase) < MIN_LENGTH:  # the strength check (client.passphrase) came first; this is a floor
            raise KeystoreError(f"passphrase too short: use at least {MIN_LENGTH} characters")
        salt = keystore.new_salt()
        params = keystore.KdfParams()
        key = keystore.derive_key(passphrase, salt, params)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path / KEYSTORE, keystore.seal_keystore(secrets.to_value(), key, salt, params))
        self._key, self._salt, self._params = key, salt, params
        self._local = localstate.local_key(secrets.device)
        # Not self._sealed: config.bin and pins.bin are written next (save_config) by the command that made it.

    def change_passphrase(self, new: str) -> None:
        """Re-seal the keystore under ``new``; only after ``unlock(agent_ok=False)`` opened it with the current
        passphrase (not an unlock session). A fresh salt; the KDF parameters it had or the default, whichever is
        stronger. The new file is written beside the old one, fsync'd and renamed over it (``atomic_write``): at
        every moment one of the two passphrases opens it. The unlock session (it holds the old key) is ended."""
        if not self._by_passphrase:
            raise KeystoreError("changing the passphrase needs the current one (not an unlock session)")
        secrets = self.unlock()
        assert self._params is not None
        old, default = self._params, keystore.KdfParams()
        params = keystore.KdfParams(max(old.time_cost, default.time_cost), max(old.memory_kib, default.memory_kib),
                                    max(old.parallelism, default.parallelism))
        salt = keystore.new_salt()
        key = keystore.derive_key(new, salt, params)
        with locked(self.path / KEYSTORE_LOCK):
            self._check_still_mine()
            atomic_write(self.path / KEYSTORE, keystore.seal_keystore(secrets.to_value(), key, salt, params))
        self._key, self._salt, self._params = key, salt, params
        self.end_session()

    def keystore_params(self) -> keystore.KdfParams:
        header, _ = keystore.parse_keystore((self.path / KEYSTORE).read_bytes())
        return header.params

    def unlock(self, agent_ok: bool = True, passphrase: str | None = None) -> Secrets:
        """Open the keystore: the key this object already derived, the unlock agent (with the session
        secret in ``MVAULT_SESSION``), ``passphrase``, or ``self.passphrases`` (a command, a file, a prompt).
        The first unlock of a home an older version wrote seals its plaintext state."""
        try:
            blob = (self.path / KEYSTORE).read_bytes()
        except FileNotFoundError as e:
            raise KeystoreError(f"no keystore in {self.path}; run `mvault join` first") from e
        header, _ = keystore.parse_keystore(blob)
        self._salt, self._params = header.salt, header.params
        value = None
        if self._key is not None:
            value = keystore.open_with_key(blob, self._key)
        elif agent_ok:
            key = self._key_from_agent()
            if key is not None:
                try:
                    value = keystore.open_with_key(blob, key)
                    self._key = key
                except KeystoreError:
                    value = None  # a session for a keystore since replaced: ask for the passphrase
        if value is None:
            value, self._key, _ = keystore.open_keystore(blob, passphrase or self.passphrases.current())
            self._by_passphrase = True
        secrets = Secrets.from_value(value)
        self._local = localstate.local_key(secrets.device)
        if secrets.sealed:
            self._sealed = True
            self._check_sealed()
        else:
            self._migrate()
            self.save_secrets(secrets)  # marks the keystore: no plaintext state is taken from now on
            secrets.sealed = self._sealed = True
        return secrets

    def unlock_quietly(self) -> tuple[Secrets, str] | None:
        """``unlock`` without a prompt: through the unlock agent ("agent"), a passphrase command or
        MVAULT_PASSPHRASE_FILE (``Passphrases.source``); None when only a prompt would open the keystore."""
        key = self._key or self._key_from_agent()
        if key is not None:
            self._key = key
            try:
                return self.unlock(), "agent"
            except KeystoreError:
                self._key = None  # a session for a keystore since replaced
        source = self.passphrases.source()
        if source is not None:
            return self.unlock(agent_ok=False), source
        return None

    def _key_from_agent(self) -> bytes | None:
        token = os.environ.get("MVAULT_SESSION")
        if not token:
            return None
        sealed = agent.fetch(self.path)
        if sealed is None:
            return None  # no agent (never started, expired, locked, killed): the passphrase it is
        try:
            return keystore.open_session(sealed, _session_secret(token), int(time.time()))
        except KeystoreError:
            return None

    def forget(self) -> None:
        """Undo a failed join, device link or recovery: remove every file it wrote."""
        agent.stop(self.path)
        for name in (CONFIG, KEYSTORE, KEYSTORE_LOCK, PINS, PINS_LOCK, LEGACY_CONFIG, LEGACY_PINS, "session.bin"):
            (self.path / name).unlink(missing_ok=True)

    def wipe(self) -> int:
        """The organization closed, and this client verified it (client/closed.py): stop the unlock agent, overwrite
        and remove every file of this home (keystore, config, pins, local copies index, synced folders' indexes,
        caches), then the home itself. Symbolic links are removed, never followed. How many files went."""
        agent.stop(self.path)
        count = 0
        for top, dirs, files in os.walk(self.path, topdown=False):
            for name in files:
                path = Path(top) / name
                if path.is_symlink() or not path.is_file():
                    path.unlink(missing_ok=True)
                else:
                    _shred(path)
                count += 1
            for name in dirs:
                path = Path(top) / name
                if path.is_symlink():
                    path.unlink()
                else:
                    path.rmdir()
        self.path.rmdir()
        self._key = self._local = None
        return count

    def save_secrets(self, secrets: Secrets) -> None:
        """Re-seal the keystore with the key it was opened with, if it is still that keystore: a passphrase
        changed meanwhile (by another command) is never undone by a command that opened the old one (review
        round 5); that command stops, and run again it opens the new keystore and finds its keys again."""
        assert self._key is not None and self._salt is not None and self._params is not None
        with locked(self.path / KEYSTORE_LOCK):
            self._check_still_mine()
            atomic_write(self.path / KEYSTORE,
                         keystore.seal_keystore(secrets.to_value(), self._key, self._salt, self._params))

    def _check_still_mine(self) -> None:
        """The keystore on disk is the one this object opened (same salt); call with KEYSTORE_LOCK held."""
        try:
            header, _ = keystore.parse_keystore((self.path / KEYSTORE).read_bytes())
        except FileNotFoundError:
            return  # being created
        if header.salt != self._salt:
            raise KeystoreError("the keystore's passphrase was changed while this command ran: nothing was saved; "
                                "run the command again")

    def start_session(self, seconds: int) -> tuple[str, int]:
        """Hand the unlocked key, wrapped under a fresh session secret, to an unlock agent for ``seconds``;
        returns (the secret for ``MVAULT_SESSION``, the expiry). Nothing is written to disk."""
        assert self._key is not None
        secret = keystore.new_session_secret()
        expires = int(time.time()) + seconds
        try:
            agent.start(self.path, keystore.seal_session(self._key, secret, expires), seconds)
        except agent.AgentError as e:
            raise KeystoreError(str(e)) from e
        return base64.urlsafe_b64encode(secret).decode().rstrip("="), expires

    def end_session(self) -> bool:
        """Stop the unlock agent (and remove a session file an older version left); True if one was there."""
        ended = agent.stop(self.path)
        legacy = self.path / "session.bin"
        if legacy.exists():
            _shred(legacy)
            ended = True
        return ended


def _missing(path: Path) -> VaultError:
    return VaultError(f"{path} is missing: without it this device cannot tell a server that rolls back (or an "
                      "impostor) from an honest one; restore it from a backup or link this device again")


def _pins_value(pins: Pins) -> dict[str, Any]:
    # Pins hold only plain dicts and lists: no dataclasses.asdict (a deep copy of every entry).
    return {f.name: getattr(pins, f.name) for f in fields(pins)}


def _pins_of(raw: dict[str, Any]) -> Pins:
    """Pins of their own from ``raw`` (kept by ``Home`` for the next read): each table copied, so that what a caller
    changes is not in ``raw``. A chain or document pin ([seq, head]) is replaced whole, never changed in place, so
    the tables' entries are shared; the audit log's pin and the signers, small and changed in place, are copied.
    ``raw`` (never changed after) stays with them as what they were read from: a save merges only what the caller
    changed since (``_read_of``; client/pinmerge.py)."""
    pins = Pins(dict(raw["chains"]), dict(raw["docs"]), dict(raw["keys"]), dict(raw["verified"]),
                copy.deepcopy(raw["log"]), copy.deepcopy(raw["signers"]), copy.deepcopy(raw.get("signers_at", {})))
    setattr(pins, _READ, raw)  # not a field: never written to pins.bin
    return pins


_READ = "_read_from"


def _read_of(pins: Pins) -> dict[str, Any] | None:
    """The pins file's value ``pins`` were read from (or written as), None for pins made otherwise (``Pins()``)."""
    read = getattr(pins, _READ, None)
    return read if isinstance(read, dict) else None


def _padded(value: Any) -> bytes:
    """JSON, padded with spaces to a power of two (at least 4 KiB): the file's size says little about
    how many chains, documents and members it pins. Written by msgspec (read by ``json.loads``: the same values):
    ``json.dumps`` took ~10x as long, ~15 % of a first sync's client CPU in a home of 11,000 documents, whose pins
    a batch put saves every second or 64 versions."""
    data = msgspec.json.encode(value)
    size = max(PAD_MIN, 1 << (len(data) - 1).bit_length())
    return data + b" " * (size - len(data))


def _shred(path: Path) -> None:
    """Overwrite, then remove (best effort: journaling and flash storage may keep old blocks)."""
    try:
        with path.open("r+b") as f:
            f.write(bytes(path.stat().st_size))
            f.flush()
            os.fsync(f.fileno())
    except FileNotFoundError:
        return
    except OSError:
        pass
    path.unlink(missing_ok=True)


def _session_secret(value: str) -> bytes:

    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as e:
        raise KeystoreError("MVAULT_SESSION is damaged; run `mvault unlock` again") from e
    if len(raw) != 32:
        raise KeystoreError("MVAULT_SESSION is damaged; run `mvault unlock` again")
    return raw
