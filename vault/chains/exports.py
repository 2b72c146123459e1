"""Export approvals in a team chain: the Security Team's two-person approval of an export of a sensitive team (rule
exports; docs/lifecycle.md "Who may export"; SECURITY.md "Exports").

    export.request {docs, recipients, expires}
                                      a member who may read the team asks to export ``docs`` (document ids, sorted,
                                      or null: every live document) to ``recipients`` (age recipients, sorted),
                                      until ``expires`` (after the link's time, at most 30 days after it)
    export.approve {request}          a Security Team member (neither the requester nor an approver of it already)
                                      approves the request named by its link hash, before it expires

Both are team links (``org_seq`` like every team link): the request is about one team, and the team chain is read
by its members, NCC and the Security Team only, so the rest of the organization does not learn who exports which
team. Each is judged by the one judge as the act of the same name (``security.policy``: ``export.request`` as a
read, ``export.approve`` by the ``security`` org role at its time, member of the team or not); this module checks
what they name and records them. An export of a sensitive team is entitled (``ExportRequest.refusal``) to its
requester, before its expiry, once the request carries approvals by two distinct Security Team members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vault.agefile import AgeKeyError, check_recipient
from vault.encoding import Value
from vault.errors import ChainError
from vault.links import Link

EXPORT_TYPES = ("export.request", "export.approve")
MAX_EXPORT_SECONDS = 30 * 86400
MAX_RECIPIENTS = 20
MAX_DOCS = 10000
APPROVALS_NEEDED = 2


@dataclass(frozen=True)
class Approval:
    member: str
    device: str
    time: int
    seq: int


@dataclass
class ExportRequest:
    """An ``export.request`` and the approvals that name it, in chain order."""

    hash: bytes
    seq: int
    requester: str
    device: str
    time: int
    expires: int
    docs: tuple[str, ...] | None  # None: every live document of the team
    recipients: tuple[str, ...]
    approvals: list[Approval] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return len({a.member for a in self.approvals}) >= APPROVALS_NEEDED

    def covers(self, docs: list[str]) -> bool:
        return self.docs is None or set(docs) <= set(self.docs)

    def refusal(self, member: str, t: int) -> str | None:
        """Why ``member`` may not export under this request at ``t`` (None: they may)."""
        if member != self.requester:
            return f"export request {self.hash.hex()[:16]} is member {self.requester}'s, not yours"
        if t >= self.expires:
            return f"export request {self.hash.hex()[:16]} expired at {self.expires}"
        if not self.approved:
            return (f"export request {self.hash.hex()[:16]} has {len(self.approvals)} of the {APPROVALS_NEEDED} "
                    "Security Team approvals it needs")
        return None

    def status(self, t: int) -> str:
        return "expired" if t >= self.expires else "approved" if self.approved else "pending"


def find_request(requests: Mapping[bytes, ExportRequest], ref: str) -> ExportRequest:
    """The request whose link hash is, or starts with, ``ref`` (8 hex characters or more); ChainError if none or
    several."""
    ref = ref.lower()
    if len(ref) < 8 or any(c not in "0123456789abcdef" for c in ref):
        raise ChainError(f"{ref!r} is not an export request id (its link hash, 8 hex characters or more)")
    found = [r for h, r in requests.items() if h.hex().startswith(ref)]
    if len(found) != 1:
        raise ChainError(f"no export request {ref}" if not found else f"{ref} names several export requests")
    return found[0]


def apply_export(requests: dict[bytes, ExportRequest], link: Link) -> None:
    """Check what an ``export.request`` / ``export.approve`` names and record it (the signer was judged already)."""
    b = link.body
    if link.type == "export.request":
        if not b.has("docs"):
            raise ChainError("export.request: missing docs (null for every document)")
        docs = None if b.raw.get("docs") is None else _ids(b.list_("docs", MAX_DOCS), "docs")
        recipients = _ids(b.list_("recipients", MAX_RECIPIENTS), "recipients")
        for r in recipients:
            try:
                if check_recipient(r) != r:
                    raise ChainError("export.request: a recipient is not in its canonical form")
            except AgeKeyError as e:
                raise ChainError(f"export.request: {e.message}") from e
        expires = b.int_("expires", 0)
        if not link.time < expires <= link.time + MAX_EXPORT_SECONDS:
            raise ChainError("export.request: the expiry must be after the request and at most 30 days after it")
        requests[link.hash] = ExportRequest(link.hash, link.seq, link.signer, link.device, link.time, expires, docs,
                                            recipients)
        return
    target = b.bytes_("request", 32)
    req = requests.get(target)
    if req is None:
        raise ChainError("export.approve names no export request of this team")
    if link.signer == req.requester:
        raise ChainError("export.approve: the requester cannot approve their own export")
    if any(a.member == link.signer for a in req.approvals):
        raise ChainError("export.approve: this member approved the request already")
    if link.time >= req.expires:
        raise ChainError(f"export.approve: the request expired at {req.expires}")
    req.approvals.append(Approval(link.signer, link.device, link.time, link.seq))


def _ids(items: list[Value], what: str) -> tuple[str, ...]:
    """A non-empty, sorted list of distinct strings (document ids, age recipients)."""
    if not items or any(not isinstance(i, str) or not 0 < len(i) <= 128 for i in items):
        raise ChainError(f"export.request: {what} must be a non-empty list of strings")
    out = tuple(str(i) for i in items)
    if list(out) != sorted(set(out)):
        raise ChainError(f"export.request: {what} must be sorted and distinct")
    return out
