"""Thread fan-out: messages posted at a target rate to one thread that F members follow live.

Setup: a real ``mvault-server run`` in its own process (HTTPS, uvloop, SQLite in a temporary
directory), a founder, a team, F reader members (the followers) and P writer members (the
posters), all made in-process with the client library (``join``, ``client.admin.invite``,
``create_team``, ``add_member``, ``Threads.create``). Each join costs one Argon2id keystore at
the enforced minimum parameters (the client cannot choose weaker ones); the bench opens each
keystore with the key derived at join instead of deriving it again.

A round: every follower opens ``GET /api/v1/teams/{team}/live`` with its own session token,
sends ``{"after": {thread: current position}, "all": false}`` and waits for ``{"type": "live"}``;
then the posters send M real messages (encrypted, signed, chained per device with
``vault.messages.make_message``, built before the round) as raw ``POST .../messages`` at the
target rate: message i is due at ``i / rate`` and is posted by device ``i % P``, each device one
POST at a time in its own sequence order (the server refuses a device's messages out of
order), so a server slower than the rate is offered less (the achieved rate is reported as
posted/s). Latency is from the moment a POST is sent to the moment a follower's receive loop
has the frame; the delivery rate is every frame received by all followers over the time from
the first POST to the last receipt. Server fan-out only: clients do not decrypt or verify (a
separate figure gives that cost per message, with ``vault.messages`` alone). Each follower
also checks that it got every position once, in order.

Reference, in the same run: a bare aiohttp WebSocket broadcast server (this file with
``--reference-server``), in its own process like ours, HTTPS with the same certificate and
uvloop, same URLs and first frame; each POST is turned into one frame of the same shape and
size and sent to every socket in turn. No checks, storage, audit or per-follower queues.
Clients, posters and bodies are identical. Rounds alternate reference and ours; medians and
the ratio of medians are printed and written to ``bench/results-fanout.json``. Nothing here
asserts a time. Both servers and this client share the machine's CPUs: each server's CPU
time per delivery (its POST handling included) and the client's are reported too.
``--quick``: 5 followers, 200 messages, 5 rounds.

    python bench/fanout.py [--quick] [--followers F] [--posters P] [--messages M] [--rate R] [--rounds K]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    Row,
    args_or_reference,
    cpu_of,
    machine,
    secrets_after_join,
    serve_reference,
    with_reference,
    with_workers,
)

from client import admin  # noqa: E402
from client.api import Api  # noqa: E402
from client.client import Client, join  # noqa: E402
from client.clock import SYSTEM  # noqa: E402
from client.home import Home, Secrets  # noqa: E402
from client.threads.team import Threads  # noqa: E402
from vault.keys import DeviceKeys  # noqa: E402
from vault.messages import Body, Message, ThreadChecker, make_message  # noqa: E402
from vault.teamkeys import TeamKey  # noqa: E402
from vault.wire64 import b64  # noqa: E402

PASSPHRASE = "bench passphrase for fan-out"
TEXT_BYTES = 200
TEAM = "fanout"
THREAD = "bench"
MSG_PREFIX = '{"type": "msg"'
BATCH_PREFIX = '{"type": "msgs"'
NOTE = "server fan-out, clients do not decrypt"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


# -- the reference server -----------------------------------------------------------------------


def reference_server(port: int, cert: Path, key: Path) -> None:
    """A bare aiohttp broadcast server: same URLs and frames as ours, nothing else."""


    sockets: set[web.WebSocketResponse] = set()
    counter = [0]

    async def live(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
        await ws.prepare(request)
        first = await ws.receive(timeout=30)
        json.loads(first.data)
        await ws.send_json({"type": "live"})
        sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        raw = base64.b64decode(body["message"], validate=True)
        counter[0] += 1
        pos = counter[0]
        frame = json.dumps({"type": "msg", "thread": request.match_info["thread"], "pos": pos, "record": b64(raw)})
        for ws in list(sockets):
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await ws.send_str(frame)
        return web.json_response({"pos": pos}, status=201)

    app = web.Application()
    app.router.add_get("/api/v1/teams/{team}/live", live)
    app.router.add_post("/api/v1/teams/{team}/threads/{thread}/messages", post)
    serve_reference(app, port, cert, key)


# -- setup through the client library ---------------------------------------------------------------


@dataclass
class Poster:
    member: str
    device: DeviceKeys
    token: str
    seq: int = 0
    prev: str | None = None
    prev_time: int = 0


@dataclass
class World:
    url: str
    fp: bytes
    team_id: str
    thread: str
    team_seq: int
    key: TeamKey
    founder_token: str
    follower_tokens: list[str]
    posters: list[Poster]
    rec: str = ""  # the thread record's ref
    sign_publics: dict[str, bytes] = field(default_factory=dict)  # device -> public key


async def setup(root: Path, invite: str, url: str, fp: bytes, followers: int, posters: int) -> World:
    fhome = Home(root / "home-founder")
    await join(fhome, invite, "founder", PASSPHRASE)
    members: list[tuple[str, Home, Secrets]] = []
    async with Api(url, fp) as api:
        s = await Client.open(fhome, secrets_after_join(fhome), api)
        await admin.create_team(s, TEAM, "program")
        for i in range(followers + posters):
            name = f"f{i:03d}" if i < followers else f"p{i - followers:02d}"
            code = await admin.invite(s, "member", "fan-out bench")
            home = Home(root / f"home-{name}")
            await join(home, code, name, PASSPHRASE)
            await admin.add_member(s, TEAM, name, "reader" if i < followers else "writer", None)
            members.append((name, home, secrets_after_join(home)))
        threads = await Threads.open(s, TEAM)
        tid = await threads.create(THREAD, 0)
        rec = (await threads.resolve(THREAD)).checker.rec
        founder_token = str(api.token)
    tokens: list[str] = []
    out: list[Poster] = []
    key: TeamKey | None = None
    team_seq = 0
    team_id = ""
    for name, home, secrets in members:
        async with Api(url, fp) as api:
            ms = await Client.open(home, secrets, api)
            if name.startswith("p"):
                team = (await ms.chains.view(refresh=True)).team_by_name(TEAM)
                key, team_seq, team_id = await ms.keys.team_key(team, team.generation), team.seq, team.team_id
                out.append(Poster(ms.session.me, secrets.device, str(api.token)))
            else:
                tokens.append(str(api.token))
    assert key is not None
    world = World(url, fp, team_id, tid, team_seq, key, founder_token, tokens, out, rec=rec)
    world.sign_publics = {p.device.device_id: p.device.sign_public for p in out}
    return world


def build_messages(world: World, count: int) -> tuple[list[list[bytes]], list[Message]]:
    """``count`` messages, message i by poster i % P, chained per device: request bodies per poster."""
    bodies: list[list[bytes]] = [[] for _ in world.posters]
    built: list[Message] = []
    for i in range(count):
        p = world.posters[i % len(world.posters)]
        text = (f"message {i:06d} " + "lorem ipsum dolor sit amet " * 10)[:TEXT_BYTES]
        m = make_message(world.key, Body(text), thread=world.thread, rec=world.rec, team_seq=world.team_seq,
                         sender=p.member,
                         device=p.device, seq=p.seq + 1, prev=p.prev, prev_time=p.prev_time, seen=[],
                         time=max(SYSTEM.now(), p.prev_time))
        p.seq, p.prev, p.prev_time = p.seq + 1, m.id, m.header.time
        bodies[i % len(world.posters)].append(json.dumps({"message": b64(m.raw)}).encode())
        built.append(m)
    return bodies, built


# -- one measured round (the same client code for both servers) -----------------------------------


@dataclass
class Round:
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    post_rate: float
    received: int
    expected: int
    failed_posts: int
    in_order: bool
    server_cpu_us_per_delivery: float
    client_cpu_us_per_delivery: float

    def summary(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def frame_pos(data: str) -> int:
    """The position of a ``msg`` frame without a full JSON parse (both servers write the same shape)."""
    i = data.index('"pos": ') + 7
    return int(data[i:data.index(",", i)])


async def measure(url: str, fp: bytes, world: World, bodies: list[list[bytes]], rate: float, after: int,
                  server_pid: int) -> Round:
    ssl_fp = aiohttp.Fingerprint(fp)
    live = f"{url}/api/v1/teams/{world.team_id}/live"
    post_url = f"{url}/api/v1/teams/{world.team_id}/threads/{world.thread}/messages"
    total = sum(len(b) for b in bodies)
    nf = len(world.follower_tokens)
    received: list[list[tuple[int, float]]] = [[] for _ in range(nf)]
    sent: dict[int, float] = {}  # position -> time its POST was sent
    failed = [0]
    remaining = [nf]
    all_in = asyncio.Event()
    wss = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_fp, limit=0),
                                timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=None))
    posts = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_fp, limit=0),
                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=20))
    try:
        async def connect(token: str) -> aiohttp.ClientWebSocketResponse:
            ws = await wss.ws_connect(live, headers={"Authorization": f"Bearer {token}"}, heartbeat=20,
                                      max_msg_size=4 * 1024 * 1024)
            await ws.send_json({"after": {world.thread: after}, "all": False})
            while True:
                msg = await ws.receive(timeout=30)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise SystemExit(f"live connection refused: {msg.type} {msg.data!r}")
                if json.loads(msg.data).get("type") == "live":
                    return ws

        sockets = await asyncio.gather(*(connect(t) for t in world.follower_tokens))

        async def follower(k: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            mine = received[k]
            clock = time.perf_counter
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = msg.data
                if data.startswith(BATCH_PREFIX):  # ours sends what waited as one frame
                    t = clock()
                    mine.extend((int(item["pos"]), t) for item in json.loads(data)["items"])
                elif data.startswith(MSG_PREFIX):
                    mine.append((frame_pos(data), clock()))
                else:
                    continue
                if len(mine) == total:
                    remaining[0] -= 1
                    if not remaining[0]:
                        all_in.set()

        readers = [asyncio.create_task(follower(k, ws)) for k, ws in enumerate(sockets)]
        procs, me = with_workers(psutil.Process(server_pid)), psutil.Process()
        cpu0, mine0 = cpu_of(procs), sum(me.cpu_times()[:2])
        auths = [{"Authorization": f"Bearer {p.token}", "Content-Type": "application/json"} for p in world.posters]
        t0 = time.perf_counter() + 0.05
        np_ = len(world.posters)

        async def poster(d: int) -> None:
            for j, body in enumerate(bodies[d]):
                due = t0 + (j * np_ + d) / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                start = time.perf_counter()
                try:
                    async with posts.post(post_url, data=body, headers=auths[d]) as resp:
                        answer = await resp.json(content_type=None)
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as e:
                    answer, status = repr(e), 0
                if status != 201:
                    failed[0] += 1
                    print(f"  POST {j} of poster {d} failed ({status}): {answer}", file=sys.stderr)
                    continue
                sent[int(answer["pos"])] = start

        await asyncio.gather(*(poster(d) for d in range(np_)))
        last_post = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 30)
        cpu1, mine1 = cpu_of(procs), sum(me.cpu_times()[:2])
        for ws in sockets:
            await ws.close()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await wss.close()
        await posts.close()
    lat = [(t - sent[pos]) * 1000 for mine in received for pos, t in mine if pos in sent]
    got = sum(len(m) for m in received)
    first = min(sent.values()) if sent else t0
    last = max((t for mine in received for _, t in mine), default=last_post)
    return Round(
        deliveries_per_s=got / (last - first) if last > first else 0.0,
        p50_ms=pct(lat, 50) if lat else float("nan"),
        p99_ms=pct(lat, 99) if lat else float("nan"),
        max_ms=max(lat) if lat else float("nan"),
        post_rate=len(sent) / (last_post - first) if last_post > first else 0.0,
        received=got,
        expected=total * nf,
        failed_posts=failed[0],
        in_order=all([q for q, _ in mine] == sorted(sent) for mine in received),
        server_cpu_us_per_delivery=(cpu1 - cpu0) / max(got, 1) * 1e6,
        client_cpu_us_per_delivery=(mine1 - mine0) / max(got, 1) * 1e6,
    )


async def thread_position(world: World) -> int:
    """The thread's last position, from the server (where followers start)."""
    async with Api(world.url, world.fp) as api:
        api.token = world.founder_token
        res = await api.get(f"/api/v1/teams/{world.team_id}/threads/{world.thread}/messages?after=0&limit=1")
    return int(res["thread"]["next_pos"]) - 1


def reader_cost(world: World, msgs: list[Message]) -> float:
    """Microseconds per message a follower would spend: parse, signature, decrypt, ordering checks."""
    raws = [m.raw for m in msgs]
    checker = ThreadChecker(world.team_id, world.thread, 0)
    t = SYSTEM.now()
    start = time.perf_counter()
    for raw in raws:
        m = Message.parse(raw)
        m.verify(world.sign_publics[m.header.device])
        m.open(world.key)
        checker.accept(m, t)
    return (time.perf_counter() - start) / len(raws) * 1e6


# -- main -------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--followers", type=int, default=50)
    ap.add_argument("--posters", type=int, default=8, help="poster devices (each posts its messages in order)")
    ap.add_argument("--messages", type=int, default=2000, help="messages per round")
    ap.add_argument("--rate", type=float, default=800.0, help="target messages per second")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="server processes (mvault-server run --workers; more "
                    "than one needs PostgreSQL: MVAULT_DATABASE_URL, bench/postgres.py)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-fanout.json")
    args = args_or_reference(ap, reference_server)
    if args is None:
        return 0
    if args.quick:
        args.followers, args.messages, args.rounds = 5, 200, 5
    import uvloop

    started = time.perf_counter()
    with with_reference(__file__, "mvault-fanout-", ("--workers", str(args.workers))) as servers:
        fp = servers.fp
        world = uvloop.run(setup(servers.tmp, servers.info["invite"], servers.info["url"], fp, args.followers,
                                 args.posters))
        setup_s = time.perf_counter() - started
        print(f"setup: server, founder, team, {args.followers} followers and {args.posters} posters "
              f"in {setup_s:.1f} s")
        ours: list[Round] = []
        refs: list[Round] = []
        all_built: list[Message] = []
        for r in range(args.rounds):
            bodies, built = build_messages(world, args.messages)
            all_built.extend(built)
            ref = uvloop.run(measure(servers.ref_info["url"], fp, world, bodies, args.rate, 0, servers.reference.pid))
            after = uvloop.run(thread_position(world))
            our = uvloop.run(measure(servers.info["url"], fp, world, bodies, args.rate, after, servers.ours.pid))
            refs.append(ref)
            ours.append(our)
            print(f"round {r + 1}: reference {ref.deliveries_per_s:,.0f}/s p50 {ref.p50_ms:.2f} "
                  f"p99 {ref.p99_ms:.2f} ms | ours {our.deliveries_per_s:,.0f}/s p50 {our.p50_ms:.2f} "
                  f"p99 {our.p99_ms:.2f} ms ({our.received}/{our.expected} delivered, "
                  f"posted at {our.post_rate:,.0f}/s)")
        frame_bytes = len(json.dumps({"type": "msg", "thread": world.thread, "pos": len(all_built),
                                      "record": b64(all_built[0].raw)}))
        decrypt_us = reader_cost(world, all_built[: min(len(all_built), 2000)])

    def med(rounds: list[Round], key: str) -> float:
        return float(statistics.median(getattr(x, key) for x in rounds))

    keys = ["deliveries_per_s", "p50_ms", "p99_ms", "max_ms", "post_rate", "server_cpu_us_per_delivery",
            "client_cpu_us_per_delivery"]
    o = {k: round(med(ours, k), 3) for k in keys}
    f = {k: round(med(refs, k), 3) for k in keys}
    ratio = o["deliveries_per_s"] / f["deliveries_per_s"] if f["deliveries_per_s"] else float("nan")
    complete = all(x.received == x.expected and not x.failed_posts for x in ours + refs)
    ordered = all(x.in_order for x in ours)
    result = {
        "note": NOTE,
        "followers": args.followers, "posters": args.posters, "messages_per_round": args.messages,
        "text_bytes": TEXT_BYTES, "record_bytes": len(all_built[0].raw), "frame_bytes": frame_bytes,
        "target_rate": args.rate, "rounds": args.rounds, "workers": args.workers, "setup_s": round(setup_s, 1),
        "ours": {**o, "rounds": [x.summary() for x in ours],
                 "what": "mvault-server run in its own process (HTTPS, uvloop, SQLite synchronous=FULL, audit "
                         "log); real signed, encrypted, chained messages"},
        "reference": {**f, "rounds": [x.summary() for x in refs],
                      "what": "bare aiohttp WebSocket broadcast server in its own process (HTTPS with the same "
                              "certificate, uvloop, same URLs and frames); no checks, storage or audit"},
        "ratio_deliveries": round(ratio, 3),
        "latency": "from sending a POST to a follower's receive loop having the frame",
        "all_delivered": complete,
        "ours_in_order": ordered,
        "reference_in_order": all(x.in_order for x in refs),
        "server_log_lines": len(servers.server_log),
        "reader_verify_decrypt_us_per_msg": round(decrypt_us, 1),
        "reader_cost": "Message.parse + verify + open + ThreadChecker.accept (vault.messages), per message",
        "machine": machine(),
    }
    row = Row("fan-out", "deliveries/s", [x.deliveries_per_s for x in ours], [x.deliveries_per_s for x in refs], True,
              f"thread messages to {args.followers} followers through mvault-server (server fan-out; clients do not "
              "decrypt)", "bare aiohttp WebSocket broadcast of same-size frames", target_ratio=0.5,
              target_text=f">= 0.5x; p99 < 15 ms at {args.rate:,.0f} msg/s",
              detail={"p50_ms": o["p50_ms"], "p99_ms": o["p99_ms"], "post_rate": o["post_rate"],
                      "reference_p99_ms": f["p99_ms"], "target_rate": args.rate},
              checks={"p99 < 15 ms": o["p99_ms"] < 15.0,
                      f"posted at {args.rate:,.0f} msg/s": o["post_rate"] >= 0.95 * args.rate,
                      "every message delivered once, in order": complete and ordered})
    result["rows"] = [row.as_json()]
    print(f"fan-out to {args.followers} followers: {args.messages} messages x {TEXT_BYTES} B text "
          f"({frame_bytes} B frames) per round, target {args.rate:,.0f} msg/s from {args.posters} poster devices, "
          f"{args.rounds} rounds, medians; {NOTE}")
    print(f"{'':<11}{'deliveries/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'posted/s':>10}"
          f"{'server us/delivery':>20}{'client us/delivery':>20}")
    for label, v in (("ours", o), ("reference", f)):
        print(f"{label:<11}{v['deliveries_per_s']:>13,.0f}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}{v['max_ms']:>9.2f}"
              f"{v['post_rate']:>10,.0f}{v['server_cpu_us_per_delivery']:>20.1f}"
              f"{v['client_cpu_us_per_delivery']:>20.1f}")
    print(f"ratio of medians (ours / reference deliveries/s): {ratio:.3f}; every message delivered to every "
          f"follower: {complete}; ours in order: {ordered}")
    print(f"a follower's parse + verify + decrypt + ordering check (vault.messages, not in the figures above): "
          f"{decrypt_us:.0f} us per message")
    print(f"{os.cpu_count()} CPUs shared by both servers and this client; Python {sys.version.split()[0]}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if complete and ordered else 1


if __name__ == "__main__":
    sys.exit(main())
