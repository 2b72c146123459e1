"""Team threads (``vault/messages.py``): thread records, ids and names.

"The server is the attacker": every record goes through what a reader does (parse, verify
the sender device's signature, decrypt). The shared world is ``tests/helpers/messages.py``.
"""

from __future__ import annotations

import pytest

from tests.helpers.messages import (
    CREATOR,
    DEVICES,
    KEY,
    KEY2,
    OTHER_KEY,
    OTHER_TEAM,
    T0,
    TEAM,
    THREAD,
    THREAD_NAME,
    THREAD_REC,
)
from vault import messages
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Value, decode, encode
from vault.errors import BadSignature, EncodingError, IntegrityError
from vault.keys import DeviceKeys
from vault.messages import (
    MAX_EXPIRE,
    MAX_NAME,
    MIN_EXPIRE,
    ThreadRecord,
    make_thread,
    thread_id,
)
from vault.teamkeys import TeamKey


@pytest.fixture
def thread_rec() -> ThreadRecord:
    return THREAD_REC


# -- threads: round trip, ids and names ---------------------------------------------------------------


def test_thread_record_round_trip(thread_rec: ThreadRecord) -> None:
    rec = ThreadRecord.parse(thread_rec.raw)
    assert rec == thread_rec
    assert (rec.team, rec.thread, rec.team_seq, rec.expire) == (TEAM, THREAD, 3, 3600)
    assert (rec.creator, rec.device, rec.time) == ("member-0", CREATOR.device_id, T0)
    rec.verify(CREATOR.sign_public)
    assert rec.name(KEY) == THREAD_NAME
    assert THREAD_NAME.encode() not in rec.raw  # the name travels encrypted


def test_thread_record_signed_by_another_device_is_refused(thread_rec: ThreadRecord) -> None:
    with pytest.raises(BadSignature):
        thread_rec.verify(DEVICES[1].sign_public)


@pytest.mark.parametrize("name", ["a", "x" * MAX_NAME, "é" * (MAX_NAME // 2), "Ünïcödé 🧵", "with spaces  "])
def test_thread_names_round_trip(name: str) -> None:
    rec = make_thread(KEY, name, team_seq=1, expire=0, creator="member-0", device=CREATOR, time=T0)
    parsed = ThreadRecord.parse(rec.raw)
    parsed.verify(CREATOR.sign_public)
    assert parsed.name(KEY) == name
    assert parsed.thread == thread_id(KEY, name)


def test_thread_id_is_a_keyed_hash_of_the_name() -> None:
    assert thread_id(KEY, THREAD_NAME) == THREAD
    assert len(THREAD) == 32 and all(c in "0123456789abcdef" for c in THREAD)
    assert thread_id(KEY, "design review ") != THREAD
    assert thread_id(KEY, "Design review") != THREAD
    assert thread_id(OTHER_KEY, THREAD_NAME) != THREAD  # another team's name key
    assert thread_id(TeamKey.generate(TEAM, 1), THREAD_NAME) != THREAD  # same team id, another name key
    assert thread_id(KEY2, THREAD_NAME) == THREAD  # the name key, not the generation, decides
    assert thread_id(TeamKey(TEAM, 7, p.random_bytes(32), KEY.name_key), THREAD_NAME) == THREAD


def test_thread_name_is_readable_only_under_the_generation_it_was_created_in(thread_rec: ThreadRecord) -> None:
    """A later generation finds the thread by name (same name key) but cannot read names
    created under generations it does not hold, and a removed member cannot read new ones."""
    assert thread_rec.gen == KEY.gen and thread_rec.name(KEY) == THREAD_NAME
    assert thread_id(KEY2, THREAD_NAME) == thread_rec.thread
    with pytest.raises(IntegrityError, match="another key generation"):
        thread_rec.name(KEY2)
    later = make_thread(KEY2, THREAD_NAME, team_seq=2, expire=0, creator="member-0", device=CREATOR, time=T0)
    assert later.name(KEY2) == THREAD_NAME
    with pytest.raises(IntegrityError):
        later.name(KEY)


def test_thread_record_of_another_team_key_does_not_name(thread_rec: ThreadRecord) -> None:
    with pytest.raises(IntegrityError, match="another key generation"):
        thread_rec.name(OTHER_KEY)
    with pytest.raises(IntegrityError, match="does not open"):
        thread_rec.name(TeamKey.generate(TEAM, 1))  # the right team id and generation, the wrong key
    other = make_thread(OTHER_KEY, THREAD_NAME, team_seq=1, expire=0, creator="member-0", device=CREATOR, time=T0)
    with pytest.raises(IntegrityError):
        other.name(KEY)


def _signed_thread(core: dict[str, Value], device: DeviceKeys = CREATOR) -> ThreadRecord:
    raw = encode(core)
    return ThreadRecord.parse(encode({"core": raw, "sig": device.sign(labels.SIG_THREAD, raw)}))


def _core(rec: ThreadRecord) -> dict[str, Value]:
    value = decode(rec.core_raw)
    assert isinstance(value, dict)
    return dict(value)


def test_name_box_swapped_from_another_thread_is_refused(thread_rec: ThreadRecord) -> None:
    """Even signed by a member: the box is bound to (team, thread) and the name to the id."""
    other = make_thread(KEY, "lunch", team_seq=3, expire=3600, creator="member-0", device=CREATOR, time=T0)
    core = _core(thread_rec)
    core["name_box"] = other.name_box
    spliced = _signed_thread(core)
    spliced.verify(CREATOR.sign_public)
    with pytest.raises(IntegrityError, match="does not open"):  # the box is bound to its thread id
        spliced.name(KEY)
    # Unsigned splice: the signature catches it first.
    raw = encode({"core": encode(core), "sig": thread_rec.sig})
    with pytest.raises(BadSignature):
        ThreadRecord.parse(raw).verify(CREATOR.sign_public)


def test_name_that_does_not_hash_to_the_id_is_refused(thread_rec: ThreadRecord) -> None:
    """A box that opens (right key, right binding) but names another thread."""
    box = p.aead_seal(
        p.kdf(KEY.seed, labels.KDF_THREAD_NAME), messages._name_ad(TEAM, THREAD), messages._pad(b"lunch", 64)
    )
    core = _core(thread_rec)
    core["name_box"] = box
    with pytest.raises(IntegrityError, match="does not match its id"):
        _signed_thread(core).name(KEY)


@pytest.mark.parametrize(
    "padded",
    [messages._pad(b"\xff\xfe name", 64), b"\x00\x00\x00\x05abc" + b"\x01" * 57, b"\x00\x00\x00\x05abc"],
    ids=["invalid-utf8", "bad-padding", "short"],
)
def test_name_box_with_malformed_content_is_refused(thread_rec: ThreadRecord, padded: bytes) -> None:
    box = p.aead_seal(p.kdf(KEY.seed, labels.KDF_THREAD_NAME), messages._name_ad(TEAM, THREAD), padded)
    core = _core(thread_rec)
    core["name_box"] = box
    with pytest.raises(IntegrityError, match="does not open"):
        _signed_thread(core).name(KEY)


def test_thread_record_claiming_another_team_does_not_name(thread_rec: ThreadRecord) -> None:
    core = _core(thread_rec)
    core["team"] = OTHER_TEAM
    with pytest.raises(IntegrityError):
        _signed_thread(core).name(KEY)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"team_seq": 0},
        {"expire": -1},
        {"expire": MAX_EXPIRE + 1},
        {"time": -1},
        {"extra": 1},
        {"team": "x" * 65},
        {"name_box": b"\x00" * 1025},
        {"creator": 5},
    ],
)
def test_malformed_thread_core_is_an_encoding_error(thread_rec: ThreadRecord, change: dict[str, Value]) -> None:
    core = _core(thread_rec)
    core.update(change)
    with pytest.raises(EncodingError):
        _signed_thread(core)


def test_malformed_thread_records_are_encoding_errors(thread_rec: ThreadRecord) -> None:
    with pytest.raises(EncodingError, match="too large"):
        ThreadRecord.parse(b"\x00" * 4097)
    for raw in [
        b"",
        thread_rec.raw[:-1],
        thread_rec.raw + b"\x00",
        encode({"core": thread_rec.core_raw}),
        encode({"core": thread_rec.core_raw, "sig": thread_rec.sig[:-1]}),
        encode({"core": thread_rec.core_raw, "sig": thread_rec.sig, "x": 1}),
        encode({"core": b"\x00" * 2049, "sig": thread_rec.sig}),
    ]:
        with pytest.raises(EncodingError):
            ThreadRecord.parse(raw)


@pytest.mark.parametrize("expire", [-1, MAX_EXPIRE + 1])
def test_make_thread_refuses_expiry_out_of_range(expire: int) -> None:
    with pytest.raises(EncodingError, match="expiry"):
        make_thread(KEY, "x", team_seq=1, expire=expire, creator="m", device=CREATOR, time=T0)


def test_make_thread_accepts_expiry_bounds() -> None:
    for expire in (0, MIN_EXPIRE, MAX_EXPIRE):
        assert make_thread(KEY, "x", team_seq=1, expire=expire, creator="m", device=CREATOR, time=T0).expire == expire
    for expire in (1, MIN_EXPIRE - 1, MAX_EXPIRE + 1, -1):  # a short expiry would hide every drop in the grace
        with pytest.raises(EncodingError, match="expiry"):
            make_thread(KEY, "x", team_seq=1, expire=expire, creator="m", device=CREATOR, time=T0)
