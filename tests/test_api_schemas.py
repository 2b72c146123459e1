"""The API as data matches the real server and the real client.

One organization is driven through every operation by the real ``mvault`` CLI (in subprocesses) with
``tests/helpers/wire_log/sitecustomize.py`` recording, outside the client, every request it sends and
every answer it gets; the three operations the client never calls (health, the OpenAPI document, the
operator's metrics) are called directly. Then:

- every answer's body validates against the Struct ``vault/wire/operations.py`` declares for its
  (operation, status), refusals included (``Error``): a field the server sends that the Struct lacks,
  or a required field it omits, fails; written back, it is the same JSON text;
- every JSON body the client sent validates against the operation's request Struct (and is the same
  JSON value written back), and its query parameters are declared;
- every WebSocket frame either side sent validates (``FollowStart``, ``LiveEvent``);
- every operation of the table had a successful call in the run, and the table is exactly the running
  server's routes;
- a path parameter that does not match its pattern is answered with the status the table declares.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import msgspec
import pytest

from server.context import DIRECTORY
from tests.conftest import MVAULT, PASSPHRASE, Member, ServerThread
from tests.helpers.closing import pretend_closed
from tests.helpers.members import unlock_here
from tests.helpers.witnessed_org import cosigned_note, list_witnesses, new_witness
from vault.wire import schemas
from vault.wire.operations import OPERATIONS, Binary, Operation, PathParam, Text, WebSocket, operation_for

RECORDER = Path(__file__).parent / "helpers" / "wire_log"


@dataclass
class Exchange:
    """One call as the client (or the test) made it, and the answer."""

    method: str
    path: str  # with its query
    request: Any  # the JSON body sent, "<binary>" for an upload, None for no body
    status: int
    response: Any  # the JSON body received, "<binary>" for a download, None for none
    process: str = ""  # the mvault process that made it (its log file)

    @property
    def operation(self) -> Operation:
        op = operation_for(self.method, urlsplit(self.path).path)
        assert op is not None, f"{self.method} {self.path} is no operation of vault/wire/operations.py"
        return op


@dataclass
class Recording:
    exchanges: list[Exchange]
    sent_frames: list[Any]  # the client's WebSocket frames (decoded JSON)
    received_frames: list[str]  # the server's WebSocket frames (JSON text)
    routes: set[tuple[str, str]]  # (method, path) of every route the running server serves
    # (operation, parameter, status): a call whose one path parameter does not match its pattern
    probes: list[tuple[Operation, PathParam, int]] = field(default_factory=list)


def validate(value: Any, shape: Any) -> Any:
    """``value`` (decoded JSON) decoded again, from its JSON text, as ``shape`` (raises ``msgspec.ValidationError``)."""
    return msgspec.json.decode(json.dumps(value).encode(), type=shape)


def check_same_json(value: Any, shape: Any) -> None:
    """An answer read as ``shape`` and written again (as the server writes JSON: ``json.dumps``) is the same
    text: every field in the same order, none added (defaults) or lost, bytes in the same base64."""
    again = json.dumps(msgspec.to_builtins(validate(value, shape)))
    assert again == json.dumps(value), f"{shape} does not write back what the server sent:\n{again[:300]}"


def check_answer(x: Exchange) -> None:
    op = x.operation
    status = str(x.status)
    assert status in op.statuses, f"{op.method} {op.path} answered {status}, which it does not declare"
    if status != op.ok:
        check_same_json(x.response, schemas.Error)
    elif op.response is Binary:
        assert x.response == "<binary>"
    elif op.response is Text:
        assert x.response == "<text>"
    elif op.response is WebSocket:
        assert x.response is None
    else:
        check_same_json(x.response, op.response)


def check_request(x: Exchange) -> None:
    op = x.operation
    query = urlsplit(x.path).query
    names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    assert names <= {q.name for q in op.query}, f"{op.method} {op.path}: undeclared query parameters {names}"
    if op.request is Binary:
        assert x.request == "<binary>"
    elif op.request is None:
        # The client posts {} to open a device-link mailbox; the server reads no body there.
        assert x.request in (None, {}), f"{op.method} {op.path} takes no body, the client sent {x.request}"
    else:
        # the same JSON value when written back (the client's field order is its own; the server reads a dict)
        assert msgspec.to_builtins(validate(x.request, op.request)) == x.request, f"{op.name}: {x.request}"


def _read(log: Path) -> Recording:
    rec = Recording([], [], [], set())
    for file in sorted(log.glob("*.jsonl")):
        for line in file.read_text().splitlines():
            entry = json.loads(line)
            if entry["kind"] == "http":
                rec.exchanges.append(Exchange(entry["method"], entry["path"], entry["request"], entry["status"],
                                              entry["response"], file.stem))
            elif entry["kind"] == "ws-send":
                rec.sent_frames.append(entry["frame"])
            else:
                rec.received_frames.append(entry["text"])
    return rec


def _member(root: Path, log: Path, name: str) -> Member:
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    return Member(root / f"home-{name}", name, pf, {"PYTHONPATH": str(RECORDER), "WIRE_LOG": str(log)})


def _follow(m: Member, poster: Member, team: str) -> None:
    """``mvault thread follow TEAM`` (every thread): once it is live, ``poster`` posts, and the message arrives."""
    p = subprocess.Popen([MVAULT, "thread", "follow", team, "--json"], env=m.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        while (line := p.stdout.readline()) and json.loads(line) != {"state": "live"}:
            pass
        assert line, p.stderr.read() if p.stderr else ""
        poster.ok("thread", "post", team, "talk", "while you follow")
        assert json.loads(p.stdout.readline())["text"] == "while you follow"
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()


def _link_a_device(alice: Member, laptop: Member) -> None:
    adder = subprocess.Popen([MVAULT, "device", "add", "--json", "--wait", "60"], env=alice.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert adder.stdout is not None
        code = json.loads(adder.stdout.readline())["code"]
        laptop.ok("device", "link", code, "--name", "laptop")
        _, err = adder.communicate(timeout=60)
        assert adder.returncode == 0, err
    finally:
        if adder.poll() is None:
            adder.kill()


def _drive(server: ServerThread, root: Path, log: Path) -> None:
    """Every operation of the API, through the real CLI."""
    alice, bob, carol = (_member(root, log, n) for n in ("alice", "bob", "carol"))
    laptop = Member(root / "home-alice-laptop", "alice", alice.passphrase_file, dict(alice.env_extra))
    assert server.invite is not None
    alice.ok("join", server.invite, "--name", "alice")  # info, found, challenge, login, chains, boxes, attest
    bob.ok("join", alice.json("invite")["invite"], "--name", "bob")  # org link; join/head, join
    # the commands after a join open the keystore through an unlock agent (no Argon2id each: tests/test_auth.py
    # tests the unlock): the same requests go out, each command still logs in to the server
    unlock_here(alice, bob)
    alice.ok("team", "create", "drafting", "--kind", "program")
    alice.ok("team", "add", "drafting", "bob", "--role", "writer")  # team link
    doc = root / "plan.md"
    doc.write_text("first")
    bob.ok("put", "drafting", str(doc))
    doc.write_text("second")
    bob.ok("put", "drafting", str(doc))
    for name in ("n1.md", "n2.md"):
        (root / name).write_text(name)
    bob.ok("put", "drafting", str(root / "n1.md"), str(root / "n2.md"))  # small files together: the batch upload
    alice.ok("ls", "drafting")
    alice.ok("history", "drafting", "plan.md")
    alice.ok("get", "drafting", "plan.md", "-o", str(root / "out.md"))  # the version body
    alice.ok("sync", "drafting", str(root / "synced"))  # small bodies together: the batch download
    alice.ok("thread", "create", "drafting", "talk")
    bob.ok("thread", "post", "drafting", "talk", "hello")
    alice.ok("thread", "ls", "drafting")
    alice.ok("thread", "read", "drafting", "talk")
    _follow(bob, alice, "drafting")  # live delivery: thread frames, then live, then the new message
    _link_a_device(alice, laptop)  # device-link mailbox, offer, member link
    alice.ok("verify", "bob", "--confirm")  # attest verify
    alice.ok("audit", "lost", "alice", "laptop")  # attest lost
    # the Security Team (as tests/conftest.py security_team): the audit key, then the audit operations
    carol.ok("join", alice.json("invite")["invite"], "--name", "carol")
    unlock_here(carol)
    alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    alice.ok("team", "create", "sec", "--kind", "security")
    alice.ok("team", "add", "sec", "carol", "--role", "admin")
    alice.ok("leave", "sec")
    assert "published the audit key" in carol.ok("whoami").err
    carol.ok("audit", "witness")  # checkpoint, leaves, cosign
    # an outside witness listed in the protocols (bob, made NCC, approves) cosigns the checkpoint note
    alice.ok("role", "grant", "bob", "ncc", "--until", "2099-01-01")
    witness = new_witness(carol)  # the checkpoint note
    list_witnesses(alice, bob, root, witness.vkey)
    carol.ok("audit", "witness-cosign", str(cosigned_note(carol, witness, int(server.clock()), root)))
    assert carol.run("audit", "report", "--json").code in (0, 1)  # attest report (1: a protocol is violated)
    carol.ok("audit", "exposure", "bob")  # the team's version records
    carol.ok("audit", "log")
    carol.ok("audit", "export", "--since", "30d")  # attest export
    carol.ok("restored", "accept", "--yes")  # a restore acceptance (nothing went back: accepted all the same)
    bob.ok("restored", "status")  # the acceptances
    _guest(root, log, alice, bob)


def _guest(root: Path, log: Path, alice: Member, bob: Member) -> None:
    """An allied organization's member added to a coalition space (tests/test_coalition_guests.py)."""
    ally = ServerThread(root / "ally-server").start()
    try:
        dora, erin = (_member(root, log, n) for n in ("dora", "erin"))
        assert ally.invite is not None
        dora.ok("join", ally.invite, "--name", "dora")
        erin.ok("join", dora.json("invite")["invite"], "--name", "erin")
        unlock_here(dora)
        code = dora.json("coalition", "pairing-code", "campaign")["code"]
        # bob is NCC too (two-person): alice's create proposes the host's coalition key, bob's records it and creates
        # the space (proposing the pin), alice's pin puts the pin in force (tests/test_coalition_cli.py)
        alice.ok("coalition", "create", "campaign", "--with", code)
        space = bob.json("coalition", "create", "campaign", "--with", code)["space"]
        alice.ok("coalition", "pin", "campaign", "--with", code)
        guest = dora.json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
        alice.ok("coalition", "add", "campaign", f"erin@{code.split(':', 4)[4]}", "--approval", guest)  # add_guest
    finally:
        ally.stop()


async def _direct(server: ServerThread, log: Path) -> None:
    """The operations the client never calls, recorded as the client's are."""
    lines = []
    fingerprint = aiohttp.Fingerprint(bytes.fromhex(server.fingerprint))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fingerprint)) as http:
        for path in ("/api/health", "/api/openapi.json"):
            async with http.get(server.url + path) as resp:
                lines.append({"kind": "http", "method": "GET", "path": path, "request": None, "status": resp.status,
                              "response": await resp.json()})
        with pretend_closed(server.app[DIRECTORY]):  # a closed organization's one answer (tests/test_closing.py)
            async with http.get(server.url + "/api/v1/closing") as resp:
                lines.append({"kind": "http", "method": "GET", "path": "/api/v1/closing", "request": None,
                              "status": resp.status, "response": await resp.json()})
        async with http.get(server.url + "/api/metrics") as resp:  # text: a loopback peer may read it
            text = await resp.text()
            lines.append({"kind": "http", "method": "GET", "path": "/api/metrics", "request": None,
                          "status": resp.status, "response": "<text>" if resp.content_type == "text/plain" else text})
    (log / "direct.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in lines))


async def _device_signed(server: ServerThread, rec: Recording, log: Path) -> None:
    """``device_signed``, which the client calls only before a coalition guest's revocation (client/expulsions.py),
    recorded as the client's calls are: each recorded (member, device, token) of this server until one answers 200."""
    asked, lines = {}, []
    fingerprint = aiohttp.Fingerprint(bytes.fromhex(server.fingerprint))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fingerprint)) as http:
        for x in rec.exchanges:
            if x.operation.name == "challenge" and x.status == 200:
                asked[x.process] = (x.request["member"], x.request["device"])
            elif x.operation.name == "login" and x.status == 200 and x.process in asked:
                member, device = asked[x.process]
                path = f"/api/v1/members/{member}/devices/{device}/signed"
                async with http.get(server.url + path, headers={"Authorization": f"Bearer {x.response['token']}"}) \
                        as resp:
                    if resp.status != 200:
                        continue  # another server's session (the ally's), or one that ended
                    lines.append({"kind": "http", "method": "GET", "path": path, "request": None,
                                  "status": resp.status, "response": await resp.json()})
                    break
    (log / "signed.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in lines))


def _tokens(rec: Recording) -> dict[str, str]:
    """member id -> a session token the recorded client got (a login follows its challenge in one process)."""
    tokens, asked = {}, {}
    for x in rec.exchanges:
        if x.operation.name == "challenge" and x.status == 200:
            asked[x.process] = x.request["member"]
        elif x.operation.name == "login" and x.status == 200:
            tokens[asked[x.process]] = x.response["token"]
    return tokens


# A value no path parameter's pattern accepts, and one each accepts (the probes need no real document,
# version, thread or slot: a value that matches is looked up, one that does not is refused before).
NO_ID, SOME_ID = "not-an-id", "0" * 32


async def _probe_path_params(server: ServerThread, rec: Recording) -> list[tuple[Operation, PathParam, int]]:
    """Each path parameter of each operation that has no JSON body, given a value its pattern refuses (the
    others valid), as alice (writer of drafting) or, for the Security Team's operation, carol."""
    views = [x.response for x in rec.exchanges if x.operation.name == "directory" and x.status == 200]
    view = max(views, key=lambda v: len(v["members"]))  # one from after carol joined (logs are not in time order)
    names = {m["name"]: mid for mid, m in view["members"].items()}
    values = {"member": names["alice"], "team": next(t for t, v in view["teams"].items() if v["name"] == "drafting")}
    tokens = _tokens(rec)
    found = []
    fingerprint = aiohttp.Fingerprint(bytes.fromhex(server.fingerprint))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fingerprint)) as http:
        for op in OPERATIONS:
            if op.request not in (None, Binary):
                continue  # a JSON body is read (and may be refused) before some parameters are checked
            token = tokens[names["carol" if op.name == "audit_team_versions" else "alice"]]
            for param in op.path_params:
                path = op.path
                for other in op.path_params:
                    value = NO_ID if other is param else values.get(other.name, SOME_ID)
                    path = path.replace(f"{{{other.name}}}", value)
                async with http.request(op.method, server.url + path,
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    check_same_json(await resp.json(), schemas.Error)  # (the path is no operation's: no check_answer)
                    found.append((op, param, resp.status))
    return found


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    root = tmp_path_factory.mktemp("schemas")
    log = root / "wire"
    log.mkdir()
    server = ServerThread(root / "server-data").start()
    try:
        _drive(server, root, log)
        asyncio.run(_direct(server, log))
        asyncio.run(_device_signed(server, _read(log), log))
        rec = _read(log)
        rec.probes = asyncio.run(_probe_path_params(server, rec))
        rec.routes = {(r.method.lower(), r.resource.canonical) for r in server.app.router.routes()
                      if r.method != "HEAD" and r.resource is not None}  # aiohttp adds a HEAD to each GET
        yield rec
    finally:
        server.stop()


def test_the_operations_are_the_routes_of_the_server(recording: Recording) -> None:
    assert {(op.method, op.path) for op in OPERATIONS} == recording.routes
    assert len(OPERATIONS) == len(recording.routes)


def test_a_path_parameter_that_does_not_match_is_refused_as_declared(recording: Recording) -> None:
    for op in OPERATIONS:
        for param in op.path_params:
            assert param.refused in op.errors, f"{op.method} {op.path}: {param.refused} ({param.name}) undeclared"
    assert len(recording.probes) >= 15
    wrong = [f"{op.method} {op.path} with {p.name}={NO_ID!r}: {status}, declared {p.refused}"
             for op, p, status in recording.probes if str(status) != p.refused]
    assert not wrong, "\n".join(wrong)


def test_every_operation_succeeded_in_the_run(recording: Recording) -> None:
    succeeded = {x.operation.name for x in recording.exchanges if str(x.status) == x.operation.ok}
    missing = sorted(op.name for op in OPERATIONS if op.name not in succeeded)
    assert not missing, f"no successful call of {missing}: drive them in _drive"


def _mismatches(exchanges: list[Exchange], check: Callable[[Exchange], None]) -> list[str]:
    """Every exchange ``check`` refuses, with what msgspec says is wrong (and where)."""
    found = []
    for x in exchanges:
        try:
            check(x)
        except msgspec.ValidationError as e:
            found.append(f"{x.method} {x.path} ({x.status}): {e}")
    return found


def test_every_answer_matches_its_struct(recording: Recording) -> None:
    wrong = _mismatches(recording.exchanges, check_answer)
    assert not wrong, "answers that do not match vault/wire/schemas.py:\n" + "\n".join(wrong)


def test_every_request_the_client_sends_matches_its_struct(recording: Recording) -> None:
    sent = [x for x in recording.exchanges if x.request not in (None, "<binary>")]
    assert len(sent) >= 20
    wrong = _mismatches(recording.exchanges, check_request)
    assert not wrong, "requests that do not match vault/wire/schemas.py:\n" + "\n".join(wrong)


def test_every_websocket_frame_matches_its_struct(recording: Recording) -> None:
    assert recording.sent_frames and recording.received_frames
    for frame in recording.sent_frames:
        assert msgspec.to_builtins(validate(frame, schemas.FollowStart)) == frame
    for text in recording.received_frames:
        check_same_json(json.loads(text), schemas.LiveEvent)
    kinds = {type(msgspec.json.decode(text, type=schemas.LiveEvent)).__name__ for text in recording.received_frames}
    assert {"ThreadFrame", "MessageItem", "LiveFrame"} <= kinds


def test_an_undeclared_or_missing_field_fails_the_check(recording: Recording) -> None:
    """The checks above are strict: one field more, or one required field less, in a real answer fails."""
    x = next(x for x in recording.exchanges if x.operation.name == "directory" and x.status == 200)
    check_answer(x)
    extra = Exchange(x.method, x.path, x.request, x.status, {**x.response, "surprise": 1})
    with pytest.raises(msgspec.ValidationError, match="unknown field `surprise`"):
        check_answer(extra)
    nested = json.loads(json.dumps(x.response))
    del next(iter(nested["members"].values()))["name"]
    with pytest.raises(msgspec.ValidationError, match="missing required field `name`"):
        check_answer(Exchange(x.method, x.path, x.request, x.status, nested))
