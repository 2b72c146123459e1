"""Evaluation of the security-protocol rules: pure functions of chain state and audit events.

``evaluate(AuditInput, Protocols)`` returns one ``RuleResult`` per rule of the protocols, in
their order. A result's status is the first that applies of: ``disabled`` (the rule is
switched off), ``violated`` (any violation), ``alert`` (any alert: suspicious counts, not a
verdict), ``warning`` (an obligation whose window is still open, or a missing attestation),
``ok``. Every parameter comes from the protocols; nothing here does I/O.

Times are unix seconds. Findings name member, team and device ids (never names: the client puts
the names in, ``client/names.py``) and the audit log indices of the events behind them; one that a
single command resolves carries it (``next_command``: ``mvault audit approve`` with the link hash,
``mvault team rotate``, ``mvault device revoke``, ``mvault verify``, ``mvault team remove``, with ids;
``mvault audit witness``).

The package: ``base`` (input, result and finding types, the shared lookups), and one module per group
of rules (``membership``, ``devices``, ``activity``, ``people``, ``documents``, ``rosters``), each with its
``CHECKS``. This module evaluates them and re-exports the public names, so ``from security.rules import ...`` is
the import path to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from security.protocols import Protocols
from security.rules import activity, devices, documents, membership, people, rosters
from security.rules.base import (
    ALERT,
    CHAIN_LINK_PREFIXES,
    DAY,
    HOUR,
    KEY_CHANGE_LINKS,
    MINUTE,
    VIOLATION,
    WARNING,
    AuditInput,
    Check,
    Context,
    Finding,
    RuleResult,
    status_of,
)

__all__ = [
    "ALERT",
    "CHAIN_LINK_PREFIXES",
    "CHECKS",
    "DAY",
    "HOUR",
    "KEY_CHANGE_LINKS",
    "MINUTE",
    "VIOLATION",
    "WARNING",
    "AuditInput",
    "Check",
    "Finding",
    "RuleResult",
    "evaluate",
    "status_of",
]

_ALL = {**membership.CHECKS, **devices.CHECKS, **activity.CHECKS, **people.CHECKS, **documents.CHECKS,
        **rosters.CHECKS}
# Every rule this version checks, in the order of the shipped protocols.
CHECKS: Final[Mapping[str, Check]] = {rule: _ALL[rule] for rule in (
    "offboarding", "rotate-on-removal", "role-terms", "dormant-devices", "lost-device", "key-verification",
    "need-to-know", "admin-count", "two-person", "bulk-access", "log-integrity", "failed-logins", "pending-shares",
    "keystore-kdf", "circle-shape", "retention", "small-threads", "probation", "vouching", "membership-review",
    "dormant-members", "document-review", "exports", "no-master-lists")}


def evaluate(inp: AuditInput, protocols: Protocols) -> list[RuleResult]:
    """One result per rule in ``protocols.rules``, in that order."""
    ctx = Context.build(inp)
    results: list[RuleResult] = []
    for rule_id, rule in protocols.rules.items():
        if not rule.enabled:
            results.append(RuleResult(rule_id, rule.severity, False, "disabled", ()))
            continue
        check = CHECKS.get(rule_id)
        if check is None:
            findings: tuple[Finding, ...] = (
                Finding(rule_id, WARNING, f"rule {rule_id} is not checked by this version of the vault", ""),)
        else:
            findings = tuple(check(ctx, rule))
        results.append(RuleResult(rule_id, rule.severity, True, status_of(True, findings), findings))
    return results
