"""docs/format.md is exact: its formulas, written out here with hashlib, nacl and argon2 only, give what
the real code produces and what a real server stores.

Nothing here calls the functions of ours that compute these values (no ``vault.keys.safety_number``,
``link_slot``, ``device_id_for``, ``vault.encoding``, ``vault.localstate``...): the canonical encoding is
re-implemented from its table, as an independent reader would. The inputs are real: a real server, the
real CLI, the rows the server stored and the files the client wrote.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import struct
import subprocess
from pathlib import Path
from typing import Any

import blake3
import nacl.bindings as sodium
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tests.conftest import MVAULT, PASSPHRASE, Member, Org

# -- the document's notation ------------------------------------------------------------------------------


def enc(value: Any) -> bytes:
    """The canonical encoding, from the table in docs/format.md."""
    if value is None:
        return b"N"
    if value is True:
        return b"T"
    if value is False:
        return b"F"
    if isinstance(value, int):
        return b"i" + struct.pack(">q", value)
    if isinstance(value, bytes):
        return b"b" + struct.pack(">I", len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return b"s" + struct.pack(">I", len(raw)) + raw
    if isinstance(value, list):
        return b"l" + struct.pack(">I", len(value)) + b"".join(enc(v) for v in value)
    assert isinstance(value, dict)
    items = sorted((k.encode("utf-8"), v) for k, v in value.items())
    return b"d" + struct.pack(">I", len(items)) + b"".join(struct.pack(">I", len(k)) + k + enc(v) for k, v in items)


def dec(data: bytes) -> Any:
    value, end = _dec(data, 0)
    assert end == len(data), "trailing bytes"
    return value


def _dec(data: bytes, at: int) -> tuple[Any, int]:
    t = data[at:at + 1]
    at += 1
    if t in (b"N", b"T", b"F"):
        return {b"N": None, b"T": True, b"F": False}[t], at
    if t == b"i":
        return struct.unpack(">q", data[at:at + 8])[0], at + 8
    (n,) = struct.unpack(">I", data[at:at + 4])
    at += 4
    if t == b"b":
        return data[at:at + n], at + n
    if t == b"s":
        return data[at:at + n].decode("utf-8"), at + n
    if t == b"l":
        items = []
        for _ in range(n):
            item, at = _dec(data, at)
            items.append(item)
        return items, at
    assert t == b"d", t
    out = {}
    for _ in range(n):
        (kl,) = struct.unpack(">I", data[at:at + 4])
        key = data[at + 4:at + 4 + kl].decode("utf-8")
        out[key], at = _dec(data, at + 4 + kl)
    return out, at


def H(label: bytes, x: bytes) -> bytes:  # noqa: N802 (the document's name)
    return hashlib.sha256(label + b"\x00" + x).digest()


def KDF(k: bytes, m: bytes, n: int = 32) -> bytes:  # noqa: N802
    return hashlib.blake2b(m, digest_size=n, key=k, person=b"mvault-v1-kdf").digest()


def AEAD_open(k: bytes, nonce: bytes, ad: bytes, ct: bytes) -> bytes:  # noqa: N802
    return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, ad, nonce, k))


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- what the server stored ---------------------------------------------------------------------------------


def stored_links(org: Org) -> dict[str, list[dict[str, Any]]]:
    """chain column -> its links decoded (wire, link fields, hash), in order."""
    chains: dict[str, list[dict[str, Any]]] = {}
    with org.server.db() as db:
        for chain, _seq, wire in db.execute("SELECT chain, seq, wire FROM links ORDER BY chain, seq"):
            outer = dec(bytes(wire))
            link = dec(outer["link"])
            chains.setdefault(chain, []).append({**link, "hash": H(b"mvault/v1/link-hash", bytes(wire))})
    return chains


def fingerprint(member_id: str, links: list[dict[str, Any]]) -> bytes:
    """The key fingerprint from a member chain replayed to its head."""
    devices: dict[str, bytes] = {}
    puk = b""
    for link in links:
        body = link["body"]
        if link["type"] in ("member.create", "device.add"):
            devices[body["device"]["id"]] = body["device"]["sign_pk"]
        if link["type"] == "device.revoke":
            del devices[body["device"]]
        if "puk" in body:
            puk = body["puk"]["sign_pk"]
    return H(b"mvault/v1/member-keys", enc({"member": member_id,
                                            "devices": sorted([d, pk] for d, pk in devices.items()),
                                            "puk": puk}))


def safety_number(a: tuple[str, bytes], b: tuple[str, bytes]) -> str:
    x, y = sorted([a, b])
    d1 = H(b"mvault/v1/safety-number", enc([[x[0], x[1]], [y[0], y[1]]]))
    d2 = H(b"mvault/v1/safety-number", d1)
    digits = "".join(f"{int.from_bytes(d[i:i + 5], 'big') % 100000:05d}" for d in (d1, d2) for i in range(0, 30, 5))
    return " ".join(digits[i:i + 5] for i in range(0, 60, 5))


def expected_safety_number(org: Org, me: Member, them: Member) -> str:
    chains = stored_links(org)
    ids = [m.json("whoami")["member"] for m in (me, them)]
    return safety_number(*[(mid, fingerprint(mid, chains[mid])) for mid in ids])


# -- tests --------------------------------------------------------------------------------------------------


def test_safety_number_and_ids_follow_the_document(org: Org) -> None:
    shown = org.alice.json("verify", "bob")["safety_number"]
    assert shown == expected_safety_number(org, org.alice, org.bob)
    assert org.bob.json("verify", "alice")["safety_number"] == shown  # order-independent
    assert len(shown) == 71 and all(len(g) == 5 and g.isdigit() for g in shown.split(" "))

    chains = stored_links(org)
    org_create = chains["org"][0]
    org_id = H(b"mvault/v1/org-id", org_create["hash"])[:16].hex()
    for name, m in (("alice", org.alice), ("bob", org.bob)):
        who = m.json("whoami")
        first = chains[who["member"]][0]
        sign_pk = first["body"]["device"]["sign_pk"]
        assert first["type"] == "member.create" and first["chain"] is None and first["prev"] is None, name
        assert H(b"mvault/v1/member-id", sign_pk)[:16].hex() == who["member"], name
        assert H(b"mvault/v1/device-id", sign_pk)[:16].hex() == first["body"]["device"]["id"], name
    # `chain` names each chain by its id from the second link on; the team id hashes the org id as hex text.
    assert all(link["chain"] == org_id for link in chains["org"][1:]) and chains["org"][1:]
    (team_id,) = [c for c in chains if chains[c][0]["type"] == "team.create"]
    create = chains[team_id][0]
    assert create["body"]["org"] == org_id
    assert H(b"mvault/v1/team-id", org_id.encode() + b"\x00" + create["body"]["nonce"])[:16].hex() == team_id
    assert all(link["chain"] == team_id for link in chains[team_id][1:]) and chains[team_id][1:]
    for chain in chains.values():
        for before, link in zip(chain, chain[1:], strict=False):
            assert link["prev"] == before["hash"] and link["seq"] == before["seq"] + 1


def test_device_link_slot_is_a_16_byte_blake2b(org: Org, tmp_path: Path) -> None:
    adder = subprocess.Popen([MVAULT, "device", "add", "--json", "--wait", "60"], env=org.alice.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert adder.stdout is not None
        code = json.loads(adder.stdout.readline())["code"]
        assert code.startswith("mvd1-")
        fields = dec(unb64url(code[len("mvd1-"):]))
        assert set(fields) == {"v", "url", "cert", "org", "member", "secret"} and len(fields["secret"]) == 32
        assert fields["cert"].hex() == org.server.fingerprint
        slot = KDF(fields["secret"], b"mvault/v1/device-link/slot", 16).hex()
        assert slot != KDF(fields["secret"], b"mvault/v1/device-link/slot")[:16].hex()  # not a truncation
        with org.server.db() as db:
            rows = db.execute("SELECT slot, member FROM link_slots").fetchall()
        assert rows == [(slot, org.alice.json("whoami")["member"])]

        laptop = Member(tmp_path / "home-alice-laptop", "alice", org.alice.passphrase_file)
        laptop.ok("device", "link", code, "--name", "laptop")
        _, err = adder.communicate(timeout=60)
        assert adder.returncode == 0, err
    finally:
        if adder.poll() is None:
            adder.kill()
            adder.wait()
    # With two devices the fingerprint sorts them: the safety number still matches the formula.
    assert len([d for d in org.alice.json("device", "ls") if d["revoked"] is None]) == 2
    assert org.bob.json("verify", "alice")["safety_number"] == expected_safety_number(org, org.bob, org.alice)


def _open_keystore(home: Path, passphrase_file: Path) -> dict[str, Any]:
    blob = (home / "keystore.bin").read_bytes()
    assert blob.startswith(b"MVKS1\n")
    (hlen,) = struct.unpack(">I", blob[6:10])
    header_raw = blob[10:10 + hlen]
    header = dec(header_raw)
    kdf = header["kdf"]
    assert kdf["alg"] == "argon2id" and (kdf["t"], kdf["m"], kdf["p"]) >= (3, 65536, 4)
    # Passphrase bytes: the file's trailing newline is stripped, nothing is normalized.
    passphrase = passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
    assert passphrase == PASSPHRASE and passphrase_file.read_text().endswith("\n")
    key = hash_secret_raw(passphrase.encode("utf-8"), kdf["salt"], time_cost=kdf["t"], memory_cost=kdf["m"],
                          parallelism=kdf["p"], hash_len=32, type=Type.ID)
    secrets: dict[str, Any] = dec(AEAD_open(key, header["nonce"], b"mvault/v1/keystore\x00" + header_raw,
                                            blob[10 + hlen:]))
    return secrets


def _open_sealed(local_key: bytes, name: str, blob: bytes) -> Any:
    assert blob.startswith(b"MVLOC1\n")
    rest = blob[7:]
    return dec(AEAD_open(local_key, rest[:24], b"mvault/v1/local/cache\x00" + name.encode(), rest[24:]))


def test_keystore_local_state_and_audit_leaves_follow_the_document(org: Org) -> None:
    org.bob.ok("thread", "create", "drafting", "plans")
    org.bob.ok("thread", "post", "drafting", "plans", "first message")
    who = org.bob.json("whoami")
    secrets = _open_keystore(org.bob.home, org.bob.passphrase_file)
    assert secrets["sealed"] is True and set(secrets["puks"]) == {"1"}
    sign_seed = secrets["device"]["sign"]
    sign_pk, _ = sodium.crypto_sign_seed_keypair(sign_seed)
    assert H(b"mvault/v1/device-id", bytes(sign_pk))[:16].hex() == who["device"]
    # The PUK's public keys in the member chain come from the seed as the document says.
    puk_seed = secrets["puks"]["1"]
    create = stored_links(org)[who["member"]][0]["body"]
    assert create["puk"]["sign_pk"] == bytes(sodium.crypto_sign_seed_keypair(KDF(puk_seed, b"mvault/v1/puk/sign"))[0])
    assert create["puk"]["box_pk"] == bytes(sodium.crypto_box_seed_keypair(KDF(puk_seed, b"mvault/v1/puk/box"))[0])
    # The device's X25519 key: crypto_box_seed_keypair's secret is SHA-512(seed)[:32], not the seed.
    box_pk, box_sk = sodium.crypto_box_seed_keypair(secrets["device"]["box"])
    assert bytes(box_pk) == create["device"]["box_pk"]
    assert bytes(box_sk) == hashlib.sha512(secrets["device"]["box"]).digest()[:32]

    local_key = KDF(sign_seed, b"mvault/v1/local/cache-key")
    for name in ("config", "pins"):
        padded = _open_sealed(local_key, name, (org.bob.home / f"{name}.bin").read_bytes())
        assert isinstance(padded, bytes)  # a bytes value, not a map
        assert len(padded) >= 4096 and len(padded) & (len(padded) - 1) == 0  # a power of two
        value = json.loads(padded)
        if name == "config":
            assert value == {"url": org.server.url, "cert_fp": org.server.fingerprint,
                             "org_root": stored_links(org)["org"][0]["hash"].hex(), "member_id": who["member"],
                             "device_id": who["device"], "name": "bob", "pin_kind": "cert",
                             "server_seq": 0}
        else:
            assert value["chains"]["org"][0] == len(stored_links(org)["org"])
            assert value["chains"]["org"][1] == stored_links(org)["org"][-1]["hash"].hex()

    (team_id,) = [c for c, links in stored_links(org).items() if links[0]["type"] == "team.create"]
    cache_name = f"threads/{team_id}"
    file_name = KDF(local_key, b"mvault/v1/local/file-name\x00" + cache_name.encode(), 16).hex()
    cache = _open_sealed(local_key, cache_name, (org.bob.home / "threads" / f"{file_name}.bin").read_bytes())
    (thread,) = cache["threads"].values()
    assert set(thread) == {"name", "record", "checker", "pos", "read", "messages", "own"}
    assert thread["name"] == "plans" and isinstance(thread["record"], bytes)
    assert [m["text"] for m in thread["messages"]] == ["first message"]

    with org.server.db() as db:
        (stored_thread,) = [bytes(r[0]) for r in db.execute("SELECT record FROM threads")]
    assert stored_thread == thread["record"]

    # Audit leaves: padding is the "pad" field inside the encoding (768 bytes at least, then multiples of 128).
    with sqlite3.connect(org.server.data_dir / "audit.db") as conn:
        rows = conn.execute("SELECT idx, hash, leaf FROM events ORDER BY idx").fetchall()
    assert rows and rows[0][0] == 0
    for _, leaf_hash, leaf in rows:
        assert bytes(leaf_hash) == hashlib.sha256(b"\x00" + bytes(leaf)).digest()
        fields = dec(bytes(leaf))
        assert set(fields) == {"v", "day", "ag", "e", "c", "k"} and len(fields["e"]) == 32
        assert [len(s) for s in fields["k"]] == [72, 72, 72]
        plaintext_len = len(fields["c"]) - 24 - 16
        assert plaintext_len >= 768 and plaintext_len % 128 == 0
    # Bob opens the events he is in with his PUK's X25519 key, by the slot formula.
    puk_box_pk, puk_box_sk = sodium.crypto_box_seed_keypair(KDF(puk_seed, b"mvault/v1/puk/box"))
    opened = []
    for _, _, leaf in rows:
        fields = dec(bytes(leaf))
        slot_key = KDF(bytes(sodium.crypto_scalarmult(puk_box_sk, fields["e"])),
                       b"mvault/v1/audit/slot-key\x00" + fields["e"] + bytes(puk_box_pk))
        for i, slot in enumerate(fields["k"]):
            try:
                k_e = AEAD_open(slot_key, slot[:24], b"mvault/v1/audit/slot", slot[24:])
            except Exception:  # noqa: BLE001 - not this slot
                continue
            ad = b"mvault/v1/audit/event\x00" + enc({"day": fields["day"], "ag": fields["ag"]})
            body = dec(AEAD_open(k_e, fields["c"][:24], ad, fields["c"][24:]))
            assert set(body) == {"e", "pad"} and isinstance(body["e"], dict) and not any(body["pad"])
            unpadded = len(enc({"e": body["e"], "pad": b""}))
            assert len(body["pad"]) == max(768 - unpadded, -unpadded % 128)
            assert body["e"]["time"] // 86400 == fields["day"]
            # Slot 1 is the actor's when the actor is a known member.
            assert i == 1 if body["e"]["actor"] == who["member"] else i == 2
            opened.append(body["e"]["action"])
    assert {"auth.login", "thread.create", "msg.post"} <= set(opened)


def test_team_keys_documents_and_messages_follow_the_document(org: Org, tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"x" * 1000)
    org.alice.ok("put", "drafting", str(doc))
    org.bob.ok("thread", "create", "drafting", "plans")
    org.bob.ok("thread", "post", "drafting", "plans", "hello")
    who = org.bob.json("whoami")
    chains = stored_links(org)
    (team_id,) = [c for c in chains if chains[c][0]["type"] == "team.create"]
    secrets = _open_keystore(org.bob.home, org.bob.passphrase_file)
    puk_pk, puk_sk = sodium.crypto_box_seed_keypair(KDF(secrets["puks"]["1"], b"mvault/v1/puk/box"))

    with org.server.db() as db:
        (box,) = [bytes(r[0]) for r in db.execute(
            "SELECT box FROM team_boxes WHERE team=? AND gen=1 AND member=?", (team_id, who["member"]))]
        (version,) = db.execute("SELECT vid, doc, record, blob, body_len FROM versions").fetchall()
        (thread_row,) = db.execute("SELECT thread FROM threads").fetchall()
        (message_row,) = db.execute("SELECT mid, record FROM messages").fetchall()
    # The team key box, its commitment in the chain and the generation's canary (in team.create's KEY).
    key_body = chains[team_id][0]["body"]["key"]
    commits = [c for link in chains[team_id] if link["body"].get("key") for c in link["body"]["key"]["boxes"]]
    assert {"member": who["member"], "puk_gen": 1, "hash": H(b"mvault/v1/box-hash", box)} in commits
    opened = dec(bytes(sodium.crypto_box_seal_open(box, puk_pk, puk_sk)))
    assert set(opened) == {"team", "gen", "member", "puk_gen", "seed", "names"}
    assert (opened["team"], opened["gen"], opened["member"]) == (team_id, 1, who["member"])
    seed, names = opened["seed"], opened["names"]
    assert key_body["canary"] == KDF(seed, b"mvault/v1/team/canary\x00" + enc({"team": team_id, "gen": 1}))
    assert names == KDF(seed, b"mvault/v1/team/name-key")  # generation 1 makes the name key

    # Documents: the id of a name, the version id, the blob and its length.
    vid, doc_id, record_raw, blob, body_len = version
    assert doc_id == KDF(names, b"mvault/v1/doc/name\x00" + b"notes.txt", 16).hex()
    record = dec(bytes(record_raw))
    core = dec(record["core"])
    signed = enc({"core": record["core"], "wrapped": record["wrapped"],
                  "meta_hash": hashlib.sha256(record["meta"]).digest(), "body_hash": record["body_hash"]})
    assert vid == blob == H(b"mvault/v1/doc/version-id", signed)[:16].hex()
    alice_device = chains[org.alice.json("whoami")["member"]][0]["body"]["device"]
    assert core["device"] == alice_device["id"]
    sodium.crypto_sign_open(record["sig"] + b"mvault/v1/doc\x00" + signed, alice_device["sign_pk"])
    body = (org.server.data_dir / "blobs" / vid[:2] / vid).read_bytes()
    # A new version is of body format 2: frames only, 16 bytes of tag each, BLAKE3 signed.
    assert core["body"] == 2 and len(core["body_nonce"]) == 4
    assert len(body) == body_len == core["body_len"] == 1000 + 16 * (1000 // (1 << 20) + 1)
    assert blake3.blake3(body).digest() == record["body_hash"]
    data_key = AEAD_open(KDF(seed, b"mvault/v1/team/doc-key"), core["nonce"],
                         b"mvault/v1/doc/wrap\x00" + record["core"], record["wrapped"])
    assert core["key_commit"] == KDF(data_key, b"mvault/v1/doc/key-commit")
    padded = AEAD_open(KDF(data_key, b"mvault/v1/doc/meta-key"), core["meta_nonce"],
                       b"mvault/v1/doc/meta\x00" + record["core"], record["meta"])
    assert len(padded) % 256 == 0 and len(padded) <= 4096
    (n,) = struct.unpack(">I", padded[:4])
    meta = dec(padded[4:4 + n])
    assert meta["name"] == "notes.txt" and meta["size"] == 1000 and not any(padded[4 + n:])
    # Its one frame (the last: flag 0x01), counter 0, under the frame key.
    frames = ChaCha20Poly1305(KDF(data_key, b"mvault/v1/doc/body2-frame-key"))
    nonce = core["body_nonce"] + (0).to_bytes(7, "big") + b"\x01"
    assert frames.decrypt(nonce, body, None) == doc.read_bytes()

    # Threads: the thread id of a name, the message id, and the body under the message key.
    assert thread_row[0] == KDF(names, b"mvault/v1/thread/id\x00" + b"plans", 16).hex()
    mid, message_raw = message_row
    message = dec(bytes(message_raw))
    header = dec(message["header"])
    assert mid == H(b"mvault/v1/msg/id", enc({"header": message["header"],
                                              "ct_hash": hashlib.sha256(message["ct"]).digest()}))[:16].hex()
    plain = AEAD_open(KDF(KDF(seed, b"mvault/v1/team/msg-key"), b"mvault/v1/msg/body-key"), header["nonce"],
                      b"mvault/v1/msg\x00" + message["header"], message["ct"])
    assert len(plain) % 256 == 0
    (n,) = struct.unpack(">I", plain[:4])
    assert dec(plain[4:4 + n]) == {"text": "hello", "attach": []}
