"""The guest's acts in a coalition space, recorded in its **own** organization's audit log (issue 20: "the audit
log of each organization records its own members' acts in the space"; docs/lifecycle.md section 2 "Audit").

After each successful ``mvault --space NAME`` command that acts on the space's content, and after ``mvault
coalition join``, the guest's client opens its ordinary session with its own organization's server and sends the
device-signed ``coalition.act`` record (``client.coalitionacts.record_act``). Which act each command is
(``ACTS``): ``put``, ``rm``, ``mv``, ``restore`` are ``put`` (each writes a signed version), ``get`` is ``read``
(``count``: the documents fetched), ``thread post`` and ``thread create`` are ``post``, ``thread read`` is ``read``,
and ``thread follow`` and ``get -o -`` are a ``read`` recorded before they start (``act_before``); ``ls``,
``history`` and ``thread ls`` (listings) record nothing.

The long or many-document commands record in batches, never one record a document: ``sync`` (one pass, and each
pass of ``--watch``) records at the end of each pass one ``read`` counting the documents it fetched (a pull, a
conflict's team version, a file found already holding the version it fetched) and one ``put`` counting the versions
it stored (a push, a move, a signed deletion, a conflict copy) (``sync_acts``); a dry run records nothing.
``thread follow`` records one ``read`` counting the messages it showed, at most once a minute (client/testknobs.py
``FOLLOW_EVERY``; ``MVAULT_TEST_FOLLOW_EVERY`` shortens it for tests, never lengthens it: ``follow_every``) and when
it stops.

The space's name in the record is the one the guest's **own** organization gave its ``org.coalition`` key, never the
host's name for the space: it is the entry whose key is the one the space's verified chain pinned for the ally that
approved this guest (``own_name``), so nothing has to be stored at ``coalition join``.

If the record cannot be sent (the own server unreachable, or it refuses), the act on the host already happened:
the command prints its result, then fails (exit 1) with an error naming the act that is not in the log
(SECURITY.md "Coalition acts")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from client.api import Api
from client.client import Client
from client.clock import Clock
from client.coalitionacts import record_act
from client.home import Home, Secrets
from client.view import View
from vault.errors import NotFound

#: the command (its words after ``mvault``) -> the act it is in the space, recorded once it succeeded
ACTS: Final = {("put",): "put", ("rm",): "put", ("mv",): "put", ("restore",): "put", ("get",): "read",
               ("thread", "post"): "post", ("thread", "read"): "read", ("thread", "create"): "post"}
#: the commands recorded BEFORE they run: ``thread follow`` reads until it is stopped (Ctrl-C, SIGTERM, or kill -9,
#: after which nothing could be recorded; review round 13: it recorded nothing at all)
BEFORE: Final[dict[tuple[str, ...], str]] = {("thread", "follow"): "read"}


def act_before(command: list[str], params: Mapping[str, object]) -> str | None:
    """The act ``command`` (with its options ``params``) is in the space, recorded before it runs (refused if its
    record is not logged): ``thread follow``, and ``get -o -``, whose plaintext goes out as it is written (a reader
    closing the pipe early kept most of it, and the command failed without its record: review round 13)."""
    if tuple(command[:1]) == ("get",) and params.get("output") == "-":
        return "read"
    return BEFORE.get(tuple(command[:2]))


#: a sync report row's action -> the act it is in the space (client/sync/plan.py, client/sync/engine.py)
SYNC_ACTS: Final = {"pull": ("read",), "in-step": ("read",), "conflict": ("read", "put"), "push": ("put",),
                    "move": ("put",), "delete-remote": ("put",)}
def sync_acts(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """The acts of one sync pass from its report ``rows``: ``[("read", n), ("put", m)]`` without the zero ones."""
    counts = {"read": 0, "put": 0}
    for row in rows:
        for act in SYNC_ACTS.get(str(row.get("action")), ()):
            counts[act] += 1
    return [(act, n) for act, n in counts.items() if n]


def act_of(command: list[str], result: object) -> tuple[str, int] | None:
    """The act (and its count) a successful ``command`` with ``result`` is in the space, or None (a listing, or an
    act recorded before it ran)."""
    act = ACTS.get(tuple(command[:1])) or ACTS.get(tuple(command[:2]))
    if act is None:
        return None
    count = len(result) if isinstance(result, list) else 1  # put and get FOLDER/ return one row a document
    return (act, count) if count else None


def own_name(guest: View, own: View, me: str) -> str:
    """The name of the own organization's ``org.coalition`` for the space of ``guest`` (the guest's verified view):
    the one whose key the space pinned for the ally that approved ``me``, which must be this organization."""
    team = next(iter(guest.teams.values()))
    entry = team.guests.get(me)
    ally = team.allies.get(entry.ally) if entry is not None else None
    if ally is not None and ally.org_root == own.org.root:
        for name, coalition in own.org.coalitions.items():
            retired = {r.entry.key for r in own.org.coalitions_retired.get(name, [])}  # the host may pin it still
            if ally.key in {coalition.key, *retired}:
                return name
    raise NotFound(f"your organization recorded no coalition key that coalition space {team.name} pins for you")


async def record(home: Home, secrets: Secrets, clock: Clock, guest: View, acts: list[tuple[str, int]]) -> None:
    """Send the records of ``acts`` (each ``(act, count)``) in the space of ``guest`` to this home's own server, in
    one session."""
    cfg = home.config()
    async with Api(cfg.url, cfg.pin) as api:
        c = await Client.open(home, secrets, api, clock)
        view = await c.chains.view()
        space, name = next(iter(guest.teams)), own_name(guest, view, c.session.me)
        for act, count in acts:
            await record_act(c, name, space, act, count=count)
