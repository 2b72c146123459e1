"""A moved server: the signed ``org.server`` link (vault/chains/org.py) and what a client does with it.

- ``follow``: in every verified session, when the organization chain puts a place (URL and transport pin)
  in force that is not this client's, the client saves it and says so once; its next command goes there.
- ``announce``: an NCC member signs the move (two people when there is another NCC member: the first link
  proposes, the same place signed by a second NCC member puts it in force).
- ``moved``: the old server is gone and the member was given the new URL and pin out of band: the client
  logs in there with that pin and saves it only if the organization chain there (the pinned root, extending
  every pinned head, replayed and judged like any other) names exactly that place in force. What it checks
  there moves the device's pins (log, chains, documents) on a scratch copy only, saved once the move is accepted:
  a refused move leaves the pins as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import dataclass, replace

from client.api import Api
from client.client import Client
from client.clock import Clock
from client.home import Home, Pins, Secrets
from vault.chains import OrgState, ServerPlace
from vault.errors import PolicyDenied, ServerMismatch, VaultError
from vault.pin import Pin, check_https_url


@dataclass(frozen=True)
class Moved:
    """What an ``org.server`` link in force says, and whether this client now uses it."""

    url: str
    pin: Pin
    signer: str  # member id
    time: int
    seq: int
    in_force: bool


def place_of(home: Home) -> tuple[str, Pin]:
    cfg = home.config()
    return cfg.url, cfg.pin


def parse_place(url: str, pin: str) -> tuple[str, Pin]:
    """A place as given on the command line (``VaultError`` with the flag's name otherwise)."""
    try:
        place = check_https_url(url.strip())
    except VaultError as e:
        raise VaultError(f"URL: {e.message}") from e
    try:
        return place, Pin.parse(pin)
    except VaultError as e:
        raise VaultError(f"--pin: {e.message} (give cert:HEX, spki:HEX or webpki)") from e


def _switch(home: Home, place: ServerPlace) -> bool:
    """Save ``place`` as this client's server (and the seq of the link that put it in force); False if it is the
    one already saved."""
    cfg = home.config()
    if (cfg.url, cfg.pin) == (place.url, place.pin):
        if place.seq > cfg.server_seq:  # (a client that followed it before it kept the seq)
            home.save_config(replace(cfg, server_seq=place.seq))
        return False
    home.save_config(replace(cfg, url=place.url, cert_fp=place.pin.value.hex(), pin_kind=place.pin.kind,
                             server_seq=place.seq))
    return True


def _older(home: Home, place: ServerPlace) -> str | None:
    """Why ``place`` must not be followed: the link that puts it in force is not newer than the ``org.server``
    link this client already follows (a chain served from before a later move, e.g. an accepted older backup)."""
    cfg = home.config()
    if (cfg.url, cfg.pin) == (place.url, place.pin) or place.seq > cfg.server_seq:
        return None
    return (f"the organization chain served puts {place.url} in force by link {place.seq}, older than the move "
            f"this device follows (link {cfg.server_seq}, to {cfg.url}): staying at {cfg.url}; if the "
            "organization moves back, an NCC member signs a new move (`mvault server announce-move`)")


async def follow(s: Client) -> Moved | None:
    """Switch to the place the verified organization chain puts in force, if it is not ours (None: nothing to do).
    An older place than the one this client follows is never followed: it stays, and says so."""
    org = (await s.chains.view()).org
    place = org.server
    if place is None:
        return None
    why = _older(s.session.home, place)
    if why is not None:
        s.session.warnings.append(why)
        return None
    if not _switch(s.session.home, place):
        return None
    s.session.cfg = s.session.home.config()
    return Moved(place.url, place.pin, place.by, place.time, place.seq, True)


async def announce(s: Client, url: str, pin: Pin) -> Moved:
    """Sign an ``org.server`` link naming ``url`` and ``pin``; whether it is in force (or waits for a second NCC
    member)."""
    view = await s.chains.view()
    current = view.org.server
    if current is not None and (current.url, current.pin) == (url, pin):
        raise VaultError(f"the organization already says its server is at {url} with pin {pin}")
    await s.chains.append_org("org.server", {"url": url, "pin_kind": pin.kind, "pin": pin.value})
    org = (await s.chains.view(refresh=True)).org
    place = org.server
    in_force = place is not None and place.seq == org.seq
    return Moved(url, pin, s.session.me, org.time, org.seq, in_force)


def named_place(org: OrgState, url: str, pin: Pin) -> ServerPlace:
    """The place in force in ``org`` if it is exactly ``url`` and ``pin``; ``ServerMismatch`` otherwise."""
    place = org.server
    if place is None:
        raise ServerMismatch(f"the organization chain at {url} names no server move: refusing to switch to a "
                             "server the organization did not announce")
    if (place.url, place.pin) != (url, pin):
        raise ServerMismatch(f"the organization chain at {url} names another place in force ({place.url}, pin "
                             f"{place.pin}): refusing to switch")
    return place


class _Scratch(Home):
    """``home`` with its pins on a scratch copy in memory: a candidate place's log, chains and documents are checked
    against the device's pins and move them on only here; ``keep`` saves them once the move is accepted."""

    def __init__(self, home: Home) -> None:
        super().__init__(home.path)
        self.__dict__.update({k: v for k, v in home.__dict__.items() if k != "path"})
        self._scratch = home.pins()

    def pins(self) -> Pins:
        return deepcopy(self._scratch)

    def save_pins(self, pins: Pins) -> None:
        self._scratch = deepcopy(pins)  # this command's alone: nothing else writes the scratch copy

    def lower_pins(self, pins: Pins, chains: Iterable[str] = (), docs: Iterable[str] = (), log: bool = False) -> None:
        self._scratch = deepcopy(pins)

    def change_pins(self, change: Callable[[Pins], None]) -> Pins:
        pins = deepcopy(self._scratch)
        change(pins)
        self._scratch = pins
        return deepcopy(pins)

    def replace_pins(self, pins: Pins) -> None:
        self._scratch = deepcopy(pins)

    def keep(self) -> None:
        """Merge the scratch pins into the device's (under the pins lock: what another command pinned meanwhile
        stays); the log pin is the new place's when its checkpoint-signing key is another one (a new log)."""
        new_log = Home.pins(self).log.get("log_key") != self._scratch.log.get("log_key")
        Home.lower_pins(self, self._scratch, log=new_log)


async def _at(home: Home, secrets: Secrets, api: Api, clock: Clock) -> Client:
    """A verified session at another place than this client's (``api``): its chains checked against every pin
    (``home`` is a ``_Scratch``: nothing the candidate serves is pinned before the move is accepted)."""
    c = Client(home, secrets, api, clock)
    c.session.cfg = replace(c.session.cfg, url=api.url, cert_fp=api.pin.value.hex(), pin_kind=api.pin.kind)
    await c.login()
    await c.chains.view(refresh=True)  # the pinned root, every pinned head extended, replayed and judged
    return c


async def moved(home: Home, secrets: Secrets, url: str, pin: Pin, clock: Clock) -> Moved:
    """Log in at ``url`` with ``pin``, verify the organization chain there names that place, then save it."""
    if place_of(home) == (url, pin):
        raise PolicyDenied(f"this client already uses {url} with pin {pin}")
    scratch = _Scratch(home)
    async with Api(url, pin) as api:
        c = await _at(scratch, secrets, api, clock)
        place = named_place((await c.chains.view()).org, url, pin)
    if place_of(home) == (place.url, place.pin):
        raise PolicyDenied(f"this client already uses {url} with pin {pin}")
    why = _older(home, place)
    if why is not None:
        raise ServerMismatch(f"refusing to switch: {why}")
    scratch.keep()  # the move is accepted: the pins checked at the new place are this device's now
    _switch(home, place)
    return Moved(place.url, place.pin, place.by, place.time, place.seq, True)


async def announce_at(home: Home, secrets: Secrets, url: str, pin: Pin, clock: Clock) -> Moved:
    """The old server is gone: sign the move at the new place itself (its chains verified first, as ``moved``
    does); once it is in force, this client uses it."""
    scratch = _Scratch(home)
    async with Api(url, pin) as api:
        c = await _at(scratch, secrets, api, clock)
        m = await announce(c, url, pin)
        place = (await c.chains.view()).org.server
    if m.in_force and place is not None:
        scratch.keep()
        _switch(home, place)
    return m
