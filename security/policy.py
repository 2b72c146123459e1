"""The permission table: who may do what. Data, not code paths.

The tables only; ``security.authority`` builds the one judge on top of them (``POLICY``), which
the server and every client use for every signed act.

Organization roles: a member holds a base role (``member`` or ``compa``) and any of the
extra roles ``ncc``, ``staff``, ``security``. Team roles: ``admin``, ``writer``,
``reader``. A team action is allowed when the actor's team role allows it, or when one
of the actor's org roles is granted it in ``TEAM_OVERRIDES`` (NCC may sign membership
changes anywhere, but only a key holder can box keys; see DESIGN.md).
"""

from __future__ import annotations

from typing import Final

from security.protocols import defaults, parse
from vault.chains import Quorum

ORG_ROLES: Final = ("member", "compa", "ncc", "staff", "security")
BASE_ROLES: Final = ("member", "compa")
TEAM_ROLES: Final = ("admin", "writer", "reader")
TEAM_KINDS: Final = ("ncc", "staff", "circle", "program", "security", "org", "coalition")

# action -> org roles that may perform it.
ORG_RULES: Final[dict[str, frozenset[str]]] = {
    "org.invite": frozenset({"member", "ncc", "staff", "security"}),
    "org.invite.member": frozenset({"member", "ncc", "staff", "security"}),
    "org.invite.compa": frozenset({"member", "ncc", "staff", "security"}),
    # Withdrawing someone else's open invite (its author withdraws it with the right to issue it, org.invite.<role>):
    # NCC, who may also admit and remove. Any member may invite, so letting "whoever may invite with that role"
    # revoke would let every member cancel every other member's invites.
    "org.invite.revoke.member": frozenset({"ncc"}),
    "org.invite.revoke.compa": frozenset({"ncc"}),
    "org.admit": frozenset({"ncc"}),
    "org.role": frozenset({"ncc"}),
    "org.remove": frozenset({"ncc"}),
    "org.protocols": frozenset({"ncc"}),
    "org.audit_team": frozenset({"ncc"}),  # designate the security team the audit log is sealed to
    "org.server": frozenset({"ncc"}),  # say the server moved (new URL and transport pin): clients follow it
    "audit.key": frozenset({"security"}),  # sign which key generation the server seals the audit log to
    "audit.cosign": frozenset({"security"}),  # cosign (witness) an audit log checkpoint
    "restore.accept": frozenset({"security"}),  # accept a server restored from an older backup (security/restore.py)
    # Signed records (vault/chains/records.py): a vouch for another member (compas do not vouch), a key
    # verification in person (anyone), an NCC member's approval of an organization link as the second person.
    "org.vouch": frozenset({"member", "ncc", "staff", "security"}),
    "org.verify": frozenset({"member", "compa", "ncc", "staff", "security"}),
    "org.approve": frozenset({"ncc"}),
    # Incidents (vault/chains/incidents.py): cut off a lost or seized device, lift the pause it puts its member
    # under. The Security Team; NCC only while the Security Team has no member (security.authority judges that).
    "org.device.cut": frozenset({"security", "ncc"}),
    "org.clear": frozenset({"security", "ncc"}),  # lift a pause (of a cut or of a suspicion)
    "org.suspect": frozenset({"security", "ncc"}),  # pause a suspected member without cutting a device
    # A roster export (vault/roster.py, rule no-master-lists): the member list sealed to a few named readers and the
    # Security Team; a signed record the server logs, not a chain link (the org chain is read by every member).
    "org.roster": frozenset({"ncc", "security"}),
    # Closing the organization (vault/chains/closing.py): NCC proposes, records the exports and closes; NCC and
    # Security Team members approve (the quorum is a protocol parameter, [closing]).
    "org.close.propose": frozenset({"ncc"}),
    "org.close.approve": frozenset({"ncc", "security"}),
    "org.close.exported": frozenset({"ncc"}),
    "org.closed": frozenset({"ncc"}),
    "team.create.ncc": frozenset({"ncc"}),
    "team.create.staff": frozenset({"ncc"}),
    "team.create.circle": frozenset({"ncc"}),
    "team.create.program": frozenset({"ncc", "staff"}),
    "team.create.security": frozenset({"ncc"}),
    "team.create.org": frozenset({"ncc"}),
    "team.create.coalition": frozenset({"ncc"}),
    # An ally's NCC records its coalition key for a space in its own chain (vault/chains/coalition.py).
    "org.coalition": frozenset({"ncc"}),
    "org.coalition.share": frozenset({"ncc"}),  # seal that key to NCC members (vault/chains/coalitionshare.py)
    # A member's signed record of its act in a coalition space, logged by its own organization's server
    # (vault/coalitionact.py; approving or removing another member is judged as org.coalition too).
    "coalition.act": frozenset({"member", "compa", "ncc", "staff", "security"}),
}

INCIDENT_ACTIONS: Final = ("org.device.cut", "org.clear", "org.suspect")
# While a member is paused (org.device.cut or org.suspect, until org.clear) they do none of these in teams of the
# kinds `[rules.lost-device] paused_kinds` of the protocols in force names (security.authority.paused_kinds; rule
# lost-device: "the member's sensitive memberships pause").
# Review round 11: also the team links that let someone else in or up (an accomplice added, promoted) and approving
# another's export: a paused member acts through nobody.
PAUSED_ACTIONS: Final = ("doc.write", "thread.post", "export.request", "team.add", "team.role", "export.approve")

# action -> team roles that may perform it inside the team.
TEAM_RULES: Final[dict[str, frozenset[str]]] = {
    "team.add": frozenset({"admin"}),
    "team.remove": frozenset({"admin"}),
    "team.role": frozenset({"admin"}),
    "team.rotate": frozenset({"admin", "writer", "reader"}),
    "team.share": frozenset({"admin", "writer", "reader"}),
    "team.leave": frozenset({"admin", "writer", "reader"}),
    "team.review": frozenset({"admin"}),  # confirm the team's member list (rule membership-review)
    "team.approve": frozenset({"admin"}),  # approve an admin grant or removal as the second person (two-person)
    "doc.write": frozenset({"admin", "writer"}),
    "doc.read": frozenset({"admin", "writer", "reader"}),
    "thread.post": frozenset({"admin", "writer"}),  # also creating a thread
    "thread.read": frozenset({"admin", "writer", "reader"}),
    # Export approvals (vault/chains/exports.py): a reader asks to export, the Security Team approves (two people).
    "export.request": frozenset({"admin", "writer", "reader"}),
    "export.approve": frozenset(),
    # Coalition spaces (vault/chains/coalition.py): pinning an ally is the host NCC's (TEAM_OVERRIDES); any member
    # of the space may carry an ally's signed removal of one of its own members (the ally decided it).
    "coalition.ally": frozenset(),
    "coalition.remove": frozenset({"admin", "writer", "reader"}),
    "coalition.rekey": frozenset({"admin", "writer", "reader"}),  # carry an ally's new coalition key (its word)
    "coalition.server": frozenset({"admin", "writer", "reader"}),  # carry the host's signed server move (its word)
}

# team action -> org roles that may perform it in any team, member of it or not.
TEAM_OVERRIDES: Final[dict[str, frozenset[str]]] = {
    "team.add": frozenset({"ncc"}),
    "team.remove": frozenset({"ncc"}),
    "team.role": frozenset({"ncc"}),
    "team.approve": frozenset({"ncc"}),
    "export.approve": frozenset({"security"}),
    "coalition.ally": frozenset({"ncc"}),
}

# Team roles an org role may hold: compas are readers only.
MAX_TEAM_ROLE: Final[dict[str, frozenset[str]]] = {
    "compa": frozenset({"reader"}),
    # An allied organization's member in a coalition space (vault.chains.coalition GUEST_ROLE): never its admin.
    "guest": frozenset({"writer", "reader"}),
}


class DefaultPolicy:
    """The shipped policy; the same object on server and clients."""

    def org_allows(self, roles: frozenset[str], action: str) -> bool:
        allowed = ORG_RULES.get(action)
        return allowed is not None and bool(roles & allowed)

    def effective_team_role(self, org_roles: frozenset[str], team_role: str | None) -> str | None:
        """A team role capped by org roles (a member later made compa acts as a reader)."""
        if team_role is not None and not self.may_hold_team_role(org_roles, team_role):
            return "reader"
        return team_role

    def team_allows(self, org_roles: frozenset[str], team_role: str | None, action: str) -> bool:
        team_role = self.effective_team_role(org_roles, team_role)
        if team_role is not None and team_role in TEAM_RULES.get(action, frozenset()):
            return True
        return bool(org_roles & TEAM_OVERRIDES.get(action, frozenset()))

    def may_hold_team_role(self, org_roles: frozenset[str], team_role: str) -> bool:
        return all(team_role in limit for org_role, limit in MAX_TEAM_ROLE.items() if org_role in org_roles)

    def protocols_version(self, text: str) -> int:
        return parse(text, "proposed security protocols").version

    def closing_quorum(self, text: str | None) -> Quorum:
        """The ``[closing]`` parameters of the protocols ``text`` in force (None: the shipped defaults)."""
        return (defaults() if text is None else parse(text, "the security protocols in force")).closing

