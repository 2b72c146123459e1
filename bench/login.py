"""Logins: full challenge-response logins per second, beside bare aiohttp JSON requests per second.

Ours: a real ``mvault-server run`` in its own process (HTTPS, uvloop, SQLite synchronous=FULL,
audit log), a founder and a few invited members made in-process with the client library
(``join``, ``client.admin.invite``; each join costs one Argon2id keystore at the enforced minimum
parameters, and the keystore is opened with the key derived at join). A login is exactly what
``client.session.Session.login`` sends, through the client's own ``Api`` (the server
certificate pinned by fingerprint): ``POST /api/v1/auth/challenge`` for a nonce, the device
signs the login statement (``vault.auth.sign_login``: origin, nonce, member, device, time),
``POST /api/v1/auth/login`` answers a session token. Two round trips per login. The server
records one durable audit event (``auth.login``, group commit, synchronous=FULL) per login
before it answers; the bench counts the audit log's growth in each round and reports events
per login. ``Client.login`` then fetches an audit checkpoint (``sync_log``) to check the log
grew; that third round trip is not part of the challenge-response and is not measured here.

C concurrent tasks share one pinned ``Api`` (one aiohttp session); task k logs in as device
k % D, one login after another, until the round's N logins are done; logins/s is N over the
wall time of the round. Every login must answer a token; failures are counted and reported,
and any failure makes the script exit 1. Only failed logins count toward the server's lockout
(rule ``failed-logins``) and nonces are single use with a 60 s lifetime, so successful logins
at any rate trip nothing; the server has no rate limit.

Reference, in the same run: a bare aiohttp server (this file with ``--reference-server``) in
its own process, HTTPS with the same certificate, uvloop, one JSON POST endpoint that parses
the body and answers a small JSON object. The same client (``Api.post``, same concurrency,
same kind of pinned session) sends N requests; requests/s. Rounds alternate reference and
ours (``bench.common.alternate``); medians and the ratio of medians (logins/s over
requests/s, as issue 6 states; a login is two requests, so 0.5 would be "as fast as bare
aiohttp") go to ``bench/results-login.json``. Nothing here asserts a time. Both servers and
this client share the machine's CPUs; each server's CPU time per operation is reported too.

    python bench/login.py [--quick] [--rounds K] [--concurrency C] [--logins N] [--devices D] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Row,
    alternate,
    args_or_reference,
    cpu_of,
    fmt,
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
from client.home import Home  # noqa: E402
from security.events import Checkpoint  # noqa: E402
from vault.auth import sign_login  # noqa: E402
from vault.errors import VaultError  # noqa: E402
from vault.keys import DeviceKeys  # noqa: E402
from vault.wire64 import b64, unb64_answer  # noqa: E402

PASSPHRASE = "bench passphrase for logins"
ECHO = "/api/v1/echo"
ROUND_TRIPS_PER_LOGIN = 2


# -- the reference server -----------------------------------------------------------------------


def reference_server(port: int, cert: Path, key: Path) -> None:
    """A bare aiohttp server: one JSON POST endpoint, HTTPS with our certificate, uvloop."""


    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"ok": True, "member": body.get("member")})

    app = web.Application()
    app.router.add_post(ECHO, echo)
    serve_reference(app, port, cert, key)


# -- setup through the client library -----------------------------------------------------------


@dataclass
class Member:
    member: str
    device: DeviceKeys


@dataclass
class World:
    url: str
    fp: bytes
    members: list[Member]
    token: str  # a session of the founder's, to read the audit checkpoint between rounds


async def setup(root: Path, invite: str, url: str, fp: bytes, devices: int) -> World:
    fhome = Home(root / "home-founder")
    await join(fhome, invite, "founder", PASSPHRASE)
    fsecrets = secrets_after_join(fhome)
    members = [Member(fhome.config().member_id, fsecrets.device)]
    async with Api(url, fp) as api:
        s = await Client.open(fhome, fsecrets, api)  # the client's own login, once, end to end
        for i in range(devices - 1):
            code = await admin.invite(s, "member", "login bench")
            home = Home(root / f"home-m{i:02d}")
            await join(home, code, f"m{i:02d}", PASSPHRASE)
            members.append(Member(home.config().member_id, secrets_after_join(home).device))
        token = str(api.token)
    return World(url, fp, members, token)


async def login_once(api: Api, member: str, device: DeviceKeys) -> str:
    """The challenge-response of ``client.session.Session.login``, line for line; returns the token."""
    ch = await api.post("/api/v1/auth/challenge", {"member": member, "device": device.device_id})
    statement, sig = sign_login(device, origin=api.url, nonce=unb64_answer(ch["nonce"]), member=member,
                                time=SYSTEM.now())
    res = await api.post("/api/v1/auth/login", {"statement": b64(statement), "sig": b64(sig)})
    return str(res["token"])


async def audit_size(world: World) -> int:
    async with Api(world.url, world.fp) as api:
        api.token = world.token
        res = await api.get("/api/v1/audit/checkpoint?from=0")
    return int(Checkpoint.parse(unb64_answer(res["checkpoint"])).size)


# -- one measured round (the same client for both servers) --------------------------------------


@dataclass
class Round:
    per_s: float
    done: int
    failed: int
    elapsed_s: float
    server_cpu_us_per_op: float
    client_cpu_us_per_op: float
    audit_events: int | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


async def measure(url: str, fp: bytes, n: int, concurrency: int, server_pid: int, members: list[Member] | None,
                  ) -> Round:
    """n operations by ``concurrency`` tasks on one pinned Api: logins if ``members``, else echo POSTs."""
    async with Api(url, fp) as api:
        errors: list[str] = []
        done = [0]
        failed = [0]

        async def one(k: int) -> None:
            try:
                if members is None:
                    m = {"member": f"{k:032x}", "device": f"{k:064x}"}
                    res = await api.post(ECHO, m)
                    ok = isinstance(res, dict) and res.get("ok") is True
                else:
                    who = members[k % len(members)]
                    ok = bool(await login_once(api, who.member, who.device))
            except (TimeoutError, VaultError, KeyError, TypeError) as e:
                ok = False
                if len(errors) < 5:
                    errors.append(f"{type(e).__name__}: {e}")
            if ok:
                done[0] += 1
            else:
                failed[0] += 1

        async def task(k: int, count: int) -> None:
            for _ in range(count):
                await one(k)

        # Warm up: open the C connections (TLS handshakes) before the clock starts.
        await asyncio.gather(*(task(k, 1) for k in range(concurrency)))
        done[0] = 0
        procs, me = with_workers(psutil.Process(server_pid)), psutil.Process()
        cpu0, mine0 = cpu_of(procs), sum(me.cpu_times()[:2])
        counts = [n // concurrency + (1 if k < n % concurrency else 0) for k in range(concurrency)]
        t0 = time.perf_counter()
        await asyncio.gather(*(task(k, c) for k, c in enumerate(counts)))
        elapsed = time.perf_counter() - t0
        cpu1, mine1 = cpu_of(procs), sum(me.cpu_times()[:2])
    ops = max(done[0], 1)
    return Round(done[0] / elapsed, done[0], failed[0], elapsed, (cpu1 - cpu0) / ops * 1e6,
                 (mine1 - mine0) / ops * 1e6, errors=errors)


# -- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 rounds of 120 logins, one member (well under 15 s)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds, at least 5 (default 7; --quick 5)")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent tasks on one pinned session")
    ap.add_argument("--logins", type=int, default=None,
                    help="logins (and reference requests) per round (default 3000; --quick 120)")
    ap.add_argument("--devices", type=int, default=None,
                    help="members logging in: the founder and D-1 invited (default 4; --quick 1)")
    ap.add_argument("--workers", type=int, default=1, help="server processes (mvault-server run --workers; more "
                    "than one needs PostgreSQL: MVAULT_DATABASE_URL, bench/postgres.py)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-login.json")
    args = args_or_reference(ap, reference_server)
    if args is None:
        return 0
    quick = {"rounds": 5, "logins": 120, "devices": 1}
    full = {"rounds": 7, "logins": 3000, "devices": 4}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.rounds = max(args.rounds, 5)
    args.devices = max(args.devices, 1)
    args.concurrency = max(args.concurrency, 1)
    import uvloop

    started = time.perf_counter()
    ours: list[Round] = []
    refs: list[Round] = []
    with with_reference(__file__, "mvault-login-", ("--workers", str(args.workers))) as servers:
        fp = servers.fp
        world = uvloop.run(setup(servers.tmp, servers.info["invite"], servers.info["url"], fp, args.devices))
        setup_s = time.perf_counter() - started
        print(f"setup: server, reference and {args.devices} member(s) in {setup_s:.1f} s")

        def run_reference() -> float:
            r = uvloop.run(measure(servers.ref_info["url"], fp, args.logins, args.concurrency, servers.reference.pid,
                                   None))
            refs.append(r)
            return r.per_s

        def run_ours() -> float:
            before = uvloop.run(audit_size(world))
            r = uvloop.run(measure(world.url, fp, args.logins, args.concurrency, servers.ours.pid, world.members))
            # Warm-up logins (one per task) are in the log's growth too.
            r.audit_events = uvloop.run(audit_size(world)) - before
            ours.append(r)
            k = len(ours)
            print(f"round {k}: reference {refs[-1].per_s:,.0f} requests/s | ours {r.per_s:,.0f} logins/s "
                  f"({r.done} ok, {r.failed} failed, {r.audit_events} audit events)")
            return r.per_s

        ref_samples, our_samples = alternate(run_reference, run_ours, args.rounds)

    failed = sum(r.failed for r in ours)
    ref_failed = sum(r.failed for r in refs)
    logins_per_round = args.logins + args.concurrency  # the timed logins and one warm-up login per task
    events_per_login = [r.audit_events / logins_per_round for r in ours if r.audit_events is not None]

    def med(rounds: list[Round], key: str) -> float:
        return round(float(statistics.median(getattr(x, key) for x in rounds)), 3)

    row = Row(
        row="login", unit="logins/s", ours=our_samples, reference=ref_samples, higher_is_better=True,
        ours_what="full challenge-response logins/s (challenge + signed statement + token; 2 round trips) on "
                  "mvault-server run (HTTPS, uvloop, SQLite synchronous=FULL, one durable audit event per login)",
        reference_what="bare aiohttp JSON POST requests/s (parse the body, answer small JSON; same certificate, "
                       "HTTPS, uvloop, own process)",
        target_ratio=0.3, target_text=">= 0.3x", reference_unit="requests/s",
        detail={
            "round_trips_per_login": ROUND_TRIPS_PER_LOGIN,
            "ratio_is": "logins/s over single-request/s (a login is 2 requests: 0.5 = per-request parity)",
            "concurrency": args.concurrency, "logins_per_round": args.logins, "devices": args.devices,
            "workers": args.workers,
            "failed_logins": failed, "failed_reference_requests": ref_failed,
            "sessions_stored_before_each_round": [1 + k * logins_per_round for k in range(len(ours))],
            "audit_event_per_login": bool(events_per_login) and min(events_per_login) >= 1.0,
            "audit_events_per_login": round(statistics.median(events_per_login), 3) if events_per_login else None,
            "ours_server_cpu_us_per_login": med(ours, "server_cpu_us_per_op"),
            "reference_server_cpu_us_per_request": med(refs, "server_cpu_us_per_op"),
            "ours_client_cpu_us_per_login": med(ours, "client_cpu_us_per_op"),
            "reference_client_cpu_us_per_request": med(refs, "client_cpu_us_per_op"),
        },
    )
    result = {
        "rows": [row.as_json()],
        "machine": machine(),
        "setup_s": round(setup_s, 1),
        "login": "client.session.Session.login's challenge-response through client.api.Api (pinned "
                 "certificate): POST /api/v1/auth/challenge, vault.auth.sign_login, POST /api/v1/auth/login -> "
                 "token; Client.login's later audit checkpoint fetch (sync_log) is not included",
        "audit": "the server seals and durably appends one auth.login event per successful login before it "
                 "answers (server/recorder.py audit_middleware); a successful challenge records nothing "
                 "(failure_only); measured: audit log growth per round over the round's logins",
        "sessions": "every login stores a session (1 h lifetime, written durably before the token is returned; "
                    "concurrent logins share one transaction), so the sessions table grows by logins + "
                    "concurrency per round; expired rows are purged at most once a minute, by an index",
        "limits": "no rate limit; only failed logins count toward the failed-logins lockout; nonces (in memory) "
                  "single use, 60 s lifetime",
        "ours_rounds": [r.summary() for r in ours],
        "reference_rounds": [r.summary() for r in refs],
        "server_log_lines": len(servers.server_log),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    ratio = row.ratio
    print(f"login: {args.logins} logins per round, {args.concurrency} concurrent, {args.devices} device(s), "
          f"{len(our_samples)} rounds alternating, medians")
    print(f"  ours      {fmt(row.ours_median, 'logins/s'):>18}  server CPU "
          f"{row.detail['ours_server_cpu_us_per_login']:,.0f} us/login, 2 round trips, "
          f"{row.detail['audit_events_per_login']} audit events/login")
    print(f"  reference {fmt(row.reference_median, 'requests/s'):>18}  server CPU "
          f"{row.detail['reference_server_cpu_us_per_request']:,.0f} us/request")
    print(f"  ratio of medians {fmt(ratio)} (target {row.target_text}): {'met' if row.met else 'missed'}; "
          f"failed logins {failed}, failed reference requests {ref_failed}")
    if failed or ref_failed:
        for r in ours + refs:
            for e in r.errors:
                print(f"  error: {e}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 1 if failed or ref_failed else 0


if __name__ == "__main__":
    sys.exit(main())
