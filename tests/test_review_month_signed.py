"""Issue 18, rule document-review: the month of a version's review-by date is signed in its header (``core.review``,
docs/format.md "Documents"), so the ``doc.write`` event the server records carries the author's signed word rather
than a query parameter only; every reader refuses a version whose signed month is not the month of the date sealed
in its metadata, and a deletion carrying one."""

from __future__ import annotations

import pytest

from vault import envelope
from vault.encoding import Value, decode, encode
from vault.envelope import DELETE, Core, DocWriter, Record, open_record
from vault.errors import EncodingError, IntegrityError
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey


def _version(key: TeamKey, device: DeviceKeys, review_by: str | None) -> Record:
    extra: dict[str, Value] | None = {"review_by": review_by} if review_by is not None else None
    w = DocWriter(key=key, team_seq=1, device=device, author="a" * 32, doc="d" * 32, seq=1, parent=None,
                  time=1_900_000_000, name="plan.md", size=3, extra_meta=extra)
    w.upload_prefix()
    w.encrypt(b"abc")
    w.finish()
    assert w.record is not None
    return w.record


def test_the_month_is_in_the_signed_header_and_readers_check_it(monkeypatch: pytest.MonkeyPatch) -> None:
    key, device = TeamKey.generate("t" * 32, 1), DeviceKeys.generate()
    record = _version(key, device, "2030-11-28")
    assert record.core.review == "2030-11"
    record.verify(device.sign_public)
    assert open_record(record, key).meta["review_by"] == "2030-11-28"
    plain = _version(key, device, None)
    fields = decode(plain.core.raw)
    assert plain.core.review is None and isinstance(fields, dict) and "review" not in fields  # bytes as before
    open_record(plain, key)
    # An author (or a modified client) signing another month than the date it seals: every reader refuses it.
    monkeypatch.setattr(envelope, "review_month", lambda d: "2031-01")
    lying = _version(key, device, "2030-11-28")
    monkeypatch.undo()
    lying.verify(device.sign_public)  # a valid signature: the lie is the author's
    with pytest.raises(IntegrityError, match="signed review month"):
        open_record(lying, key)


def test_a_malformed_or_misplaced_month_is_refused_by_the_header_parser() -> None:
    key, device = TeamKey.generate("t" * 32, 1), DeviceKeys.generate()
    core = decode(_version(key, device, "2030-11-28").core.raw)
    assert isinstance(core, dict)
    for bad in ("2030-13", "2030-1", "2030-11-28", ""):
        with pytest.raises(EncodingError):
            Core.parse(encode({**core, "review": bad}))
    with pytest.raises(EncodingError, match="deletion"):
        Core.parse(encode({**core, "op": DELETE, "body_len": envelope.body_length(0), "review": "2030-11"}))
