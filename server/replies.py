"""What the server says when a store refuses a write: each refusing outcome of ``server/store/records.py``
becomes the ``VaultError`` a route raises (its status, code and text), here and nowhere else.

The stores answer with typed values and know no user-facing text; the routes ``match`` each outcome
(``typing.assert_never`` makes mypy prove every member is handled) and raise what these functions build.
The checks made before a request's body arrives use the same functions, so an upload refused before its
bytes and one refused inside the store's transaction read the same.
"""

from __future__ import annotations

from typing import assert_never

from server.store.records import ChainMoved, HeadMoved, LinksAppended, LinksMoved, LinksOutcome, TeamMoved
from server.usage import OverDailyCount, OverQuota, OverStoredBytes
from vault.errors import Conflict, NotFound, QuotaExceeded

_KINDS = {"version": "document versions", "thread": "threads"}


def head_moved(moved: HeadMoved) -> Conflict:
    return Conflict(f"document changed on the server (now at version {moved.head_seq}); fetch, merge, put again")


def team_moved(moved: TeamMoved) -> Conflict:
    """The team chain moved on while an upload's body arrived (or while its version waited to be stored)."""
    return Conflict(f"the team changed during the upload (now at link {moved.team_seq}); sync and put again")


def signer_moved() -> Conflict:
    """The signer's member chain or the organization chain kept moving while the act was stored (``STORE_TRIES``)."""
    return Conflict("your member chain or the organization chain changed while this was stored; sync and try again")


def over_quota(over: OverQuota) -> QuotaExceeded:
    match over:
        case OverStoredBytes(stored=stored, adds=adds, limit=limit):
            return QuotaExceeded(f"quota stored_bytes: you store {stored} bytes of documents and this version "
                                 f"adds {adds}; the limit is {limit} bytes per member", status=413)
        case OverDailyCount(kind=kind, per_day=per_day, retry_after=retry):
            return QuotaExceeded(f"quota {kind}s_per_day: at most {per_day} new {_KINDS[kind]} per member in "
                                 f"24 hours; try again in {retry} s", retry_after=retry)
        case _:
            assert_never(over)


def thread_exists() -> Conflict:
    return Conflict("a thread with this name already exists in the team")


def no_such_thread() -> NotFound:
    return NotFound("no such thread in this team")


def check_appended(outcome: LinksOutcome) -> None:
    """Links are appended by six routes, all with the same reply to a chain that moved on."""
    match outcome:
        case LinksAppended():
            return
        case ChainMoved():
            raise Conflict("the chain moved on; fetch and retry")
        case LinksMoved():  # answered ``STORE_TRIES`` times in a row (links stored through other server processes)
            raise Conflict("the chains kept moving while this was stored; fetch and retry")
        case _:
            assert_never(outcome)
