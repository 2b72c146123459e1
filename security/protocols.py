"""Security protocols as data: ``security-protocols.toml``.

The shipped file holds the defaults and is also the schema: an organization's version
may change values, enable or disable rules and reorder nothing else. Unknown rules,
unknown keys and values of the wrong type are refused with a message that names them,
so a typo never silently switches a rule off.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from vault.chains import Quorum, check_quorum, protocols_digest
from vault.errors import EncodingError
from vault.signednote import COSIGNATURE_V1, VerifierKey

SEVERITIES = ("critical", "high", "medium", "low")
MAX_TEXT = 64 * 1024
MAX_QUOTA = 2**62


def default_text() -> str:
    return resources.files("security").joinpath("security-protocols.toml").read_text("utf-8")


@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    severity: str
    params: dict[str, Any]

    def int_(self, key: str) -> int:
        value = self.params[key]
        assert isinstance(value, int)
        return value

    def strs(self, key: str) -> tuple[str, ...]:
        value = self.params[key]
        assert isinstance(value, list)
        return tuple(str(v) for v in value)


@dataclass(frozen=True)
class Protocols:
    version: int
    rules: dict[str, Rule]
    retention_days: int
    text: str
    quotas: dict[str, int] = field(default_factory=dict)  # [quotas]: per-member limits the server enforces
    # [sync]: a folder sync pass deleting more than this percent of the files it knows asks for --confirm-deletes
    sync_delete_percent: int = 50
    # [closing]: the quorum an org.close.propose records and its org.closed needs (vault/chains/closing.py)
    closing: Quorum = Quorum("majority", 1)

    @property
    def digest(self) -> bytes:
        return protocols_digest(self.text)

    def rule(self, rule_id: str) -> Rule:
        return self.rules[rule_id]


def _parse_toml(text: str, what: str) -> dict[str, Any]:
    if len(text.encode("utf-8")) > MAX_TEXT:
        raise EncodingError(f"{what} is larger than {MAX_TEXT} bytes")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise EncodingError(f"{what} is not valid TOML: {e}") from e


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return type(default) is type(value)


def parse(text: str, what: str = "security-protocols.toml") -> Protocols:
    """Validate ``text`` against the shipped defaults' schema; missing keys take the default."""
    schema = _parse_toml(default_text(), "the shipped security-protocols.toml")
    data = _parse_toml(text, what)
    unknown = set(data) - {"version", "rules", "retention", "quotas", "sync", "closing"}
    if unknown:
        raise EncodingError(f"{what}: unknown top-level keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise EncodingError(f"{what}: 'version' must be a positive integer")
    # Each rule's table as given ({} where none is): its keys and values are checked below.
    given_rules = _table(data.get("rules", {}), dict.fromkeys(schema["rules"], {}),
                         not_a_table=f"{what}: [rules] must be a table", unknown_keys=f"{what}: unknown rules",
                         name_known=True)
    rules: dict[str, Rule] = {}
    for rule_id, defaults in schema["rules"].items():
        merged = _table(given_rules[rule_id], defaults, not_a_table=f"{what}: rules.{rule_id} must be a table",
                        unknown_keys=f"{what}: rules.{rule_id} has unknown keys", where=f"{what}: rules.{rule_id}",
                        check=_rule_value)
        if merged["severity"] not in SEVERITIES:
            raise EncodingError(f"{what}: rules.{rule_id}.severity must be one of {SEVERITIES}")
        enabled, severity = merged.pop("enabled"), merged.pop("severity")
        rules[rule_id] = Rule(rule_id, bool(enabled), str(severity), merged)
    for key in rules["log-integrity"].strs("witness_keys"):
        try:
            witness_key(key)
        except EncodingError as e:
            raise EncodingError(f"{what}: rules.log-integrity.witness_keys: {key!r}: {e}") from e
    retention = data.get("retention", {})
    if not isinstance(retention, dict) or set(retention) - {"days"}:
        raise EncodingError(f"{what}: [retention] takes only 'days'")
    days = retention.get("days", schema["retention"]["days"])
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise EncodingError(f"{what}: retention.days must be an integer from 1 to 3650")
    sync = _table(data.get("sync", {}), schema["sync"], not_a_table=f"{what}: [sync] must be a table",
                  unknown_keys=f"{what}: [sync] has unknown keys", name_known=True, where=f"{what}: sync",
                  check=_percent_value)
    closing = _table(data.get("closing", {}), schema["closing"], not_a_table=f"{what}: [closing] must be a table",
                     unknown_keys=f"{what}: [closing] has unknown keys", name_known=True, where=f"{what}: closing",
                     check=_closing_value)
    return Protocols(version, rules, days, text, _quotas(data.get("quotas", {}), schema["quotas"], what),
                     int(sync["max_delete_percent"]), check_quorum(closing["ncc"], closing["security"]))


def _quotas(given: Any, defaults: dict[str, int], what: str) -> dict[str, int]:
    """[quotas]: every key is a known quota and a positive integer; missing keys take the default."""
    return _table(given, defaults, not_a_table=f"{what}: [quotas] must be a table",
                  unknown_keys=f"{what}: [quotas] has unknown keys", name_known=True, where=f"{what}: quotas",
                  check=_quota_value)


def _table(given: Any, defaults: dict[str, Any], *, not_a_table: str, unknown_keys: str, name_known: bool = False,
           where: str = "", check: Callable[[Any, Any], str | None] | None = None) -> dict[str, Any]:
    """``defaults`` with the table ``given`` over it: ``given`` is a table of keys ``defaults`` has, and ``check``
    (default value, given value) returns what is wrong with a value, or None. The messages: ``not_a_table``;
    ``unknown_keys`` followed by the sorted unknown keys (and the known ones with ``name_known``);
    ``where.key`` followed by what ``check`` said."""
    if not isinstance(given, dict):
        raise EncodingError(not_a_table)
    unknown = set(given) - set(defaults)
    if unknown:
        known = f" (known: {sorted(defaults)})" if name_known else ""
        raise EncodingError(f"{unknown_keys} {sorted(unknown)}{known}")
    merged = dict(defaults)
    for key, value in given.items():
        problem = None if check is None else check(defaults[key], value)
        if problem is not None:
            raise EncodingError(f"{where}.{key} {problem}")
        merged[key] = value
    return merged


def _rule_value(default: Any, value: Any) -> str | None:
    if not _same_type(default, value):
        return f"must be like {default!r}"
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return "must not be negative"
    return None


def _quota_value(default: int, value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_QUOTA:
        return f"must be an integer from 1 to {MAX_QUOTA}"
    return None


def _percent_value(default: int, value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        return "must be an integer from 1 to 100"
    return None


def _closing_value(default: Any, value: Any) -> str | None:
    """[closing]: ``ncc`` is majority, all or a number 1-99 written as a string; ``security`` a number 0-99."""
    try:
        if isinstance(default, str) and isinstance(value, str):
            check_quorum(value, 0)
        elif isinstance(value, int) and not isinstance(value, bool):
            check_quorum("majority", value)
        else:
            return f"must be like {default!r}"
    except ValueError as e:
        return f"is not valid: {e}"
    return None


def witness_key(text: str) -> VerifierKey:
    """A witness key of ``[rules.log-integrity] witness_keys``: a verifier key of type cosignature/v1."""
    key = VerifierKey.parse(text)
    if key.sig_type != COSIGNATURE_V1:
        raise EncodingError("a witness key is of signature type 0x04 (cosignature/v1)")
    return key


def witness_keys(protocols: Protocols) -> list[VerifierKey]:
    """The outside witnesses the protocols in force list (checked when the protocols were parsed)."""
    return [witness_key(k) for k in protocols.rule("log-integrity").strs("witness_keys")]


@functools.cache
def defaults() -> Protocols:
    """The shipped protocols, parsed once per process (a command asks for them several times: the view, the
    checkpoint's rules, the outside witnesses; two TOML parses each, ~2-5 ms of a command's start). Nothing
    changes a ``Protocols`` after ``parse`` made it."""
    return parse(default_text(), "the shipped security-protocols.toml")
