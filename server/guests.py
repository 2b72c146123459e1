"""Coalition guests on the host organization's server (docs/lifecycle.md section 2, "Guest login").

A guest is a member of an allied organization whose member chain the host's server holds only because a space
admin added them to a coalition space with their organization's signed ``coalition.admit`` (``POST
/api/v1/teams/{team}/guests``): never a member of the host's organization. A guest logs in like any member (their
own device keys), but only while they hold a role in at least one space, and their session reaches only the
operations of ``GUEST_OPERATIONS``, scoped to their spaces: never the host's organization chain, its other
members' chains or names (the host's roster: rule ``no-master-lists``), the audit log or the organization's acts.
"""

from __future__ import annotations

from typing import Final

from server.directory import Directory
from vault.chains import TeamState
from vault.errors import AuthError
from vault.wire.operations import OPERATIONS

# What a guest's session may call: its own member chain, its spaces' chains, key boxes, documents and threads. Every
# other operation is refused with 403 (deny by default: a new route is closed to guests until it is listed here).
GUEST_OPERATIONS: Final = frozenset({
    "directory", "member_chain", "append_member_link", "device_signed", "team_chain", "append_team_link",
    "team_boxes", "puk_boxes",
    "list_docs", "doc_versions", "put_version", "put_versions", "version_body", "version_bodies", "list_threads",
    "create_thread", "read_messages", "post_message", "follow",
})
GUEST_ROUTES: Final = frozenset((op.method.upper(), op.path) for op in OPERATIONS if op.name in GUEST_OPERATIONS)


def is_guest(directory: Directory, member_id: str) -> bool:
    """Not a member of this organization: a member chain the server holds only for a coalition space."""
    org = directory.org
    return org is not None and member_id not in org.members


def guest_spaces(directory: Directory, member_id: str, now: int) -> list[TeamState]:
    """The coalition spaces where ``member_id`` is a guest holding a role now."""
    return [t for t in directory.teams.values()
            if t.kind == "coalition" and member_id in t.guests and t.role_of(member_id, now) is not None]


def check_guest(directory: Directory, member_id: str, now: int) -> None:
    """A login or session of a member chain outside the organization holds only while it is a space's guest."""
    if is_guest(directory, member_id) and not guest_spaces(directory, member_id, now):
        raise AuthError("this member is neither a member of this organization nor a guest of any of its coalition "
                        "spaces (removed from the space, or their role ended)")


def visible_members(directory: Directory, member_id: str, now: int) -> set[str]:
    """The member chains a guest may read: its own and those of the members of the spaces it was admitted to, past
    members included (it needs them to check the space's links and contents), nobody else's. Of a space where it
    holds no role now, the members as of the last link served to it (``served_length``): nobody who joined after
    its removal or the end of its role (review round 12)."""
    seen = {member_id}
    for t in directory.teams.values():
        if t.kind != "coalition" or member_id not in t.guests:
            continue
        served = directory.served_length(t.team_id, member_id, now, False)
        if served is not None and served[1]:
            seen |= set(t.members) | set(t.removed_at)  # the departed too: their past links and boxes replay
        elif served is not None and (snap := t.snapshots.get(served[0])) is not None:
            seen |= set(snap.roles)
    return seen
