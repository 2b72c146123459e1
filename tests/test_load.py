"""Load (issue 17): many concurrent clients for a while, mixing logins, uploads, downloads, thread posts and live
followers, against the real server started as ``mvault-server run`` (its own process, so that its memory can be
sampled) on a loopback port.

The clients are the real client library (``client.client.Client``, ``client.docs``, ``client.threads``) in this
process, on one asyncio loop; four members (made once for the module through the CLI) share them, several
sessions each. Every operation must succeed or be a documented conflict (``Conflict``, HTTP 409: two clients
storing the same document at once, or a post racing another of the same device); anything else fails the test,
a 5xx above all. The server's resident memory is sampled during the run: after the warm-up (the first fifth
of the run) it must stay under three times what it was then (a generous sanity bound, never a timing). The
figures (operations per second, p50/p99 latency per kind, memory) are printed, not asserted.

``make test``: 50 clients for 10 s. ``make test-long`` (``MVAULT_LONG`` set): 200 clients for 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.api import Api
from client.client import Client
from client.home import Home, Secrets
from client.threads.team import Threads
from tests.conftest import PASSPHRASE, Member, free_port
from tests.helpers.clock import FOLLOWS_ENVIRONMENT
from vault.errors import Conflict, VaultError

LONG = bool(os.environ.get("MVAULT_LONG"))
CLIENTS, SECONDS = (200, 60.0) if LONG else (50, 10.0)
SERVER = str(Path(sys.executable).parent / "mvault-server")
NAMES = ("alice", "bob", "carol", "dave")
FOLLOW_EVERY = 5  # one client in five is a live follower of the team's thread
WARM_UP = 0.2  # of the run: memory is compared with what it was at its end


@dataclass
class Deployment:
    process: subprocess.Popen[str]
    url: str
    fingerprint: bytes
    root: Path
    members: dict[str, tuple[Home, Secrets]]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("load")
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    port = free_port()
    # One address is every client here: requests without a session get a budget far over the default.
    process = subprocess.Popen([SERVER, "run", "--data", str(root / "server-data"), "--port", str(port), "--json",
                                "--rate", "100000", "--burst", "1000000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        members = {n: Member(root / f"home-{n}", n, pf) for n in NAMES}
        alice = members["alice"]
        alice.ok("join", info["invite"], "--name", "alice")
        alice.ok("team", "create", "load", "--kind", "program")
        alice.ok("thread", "create", "load", "general")
        for name in NAMES[1:]:
            members[name].ok("join", alice.json("invite")["invite"], "--name", name)
            alice.ok("team", "add", "load", name, "--role", "writer")
        (root / "shared.txt").write_bytes(b"shared from the start\n")
        alice.ok("put", "load", str(root / "shared.txt"))
        opened = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            for name, m in members.items():
                home = Home(m.home)
                opened[name] = (home, home.unlock())
        yield Deployment(process, info["url"], bytes.fromhex(info["fingerprint"]), root, opened)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    conflicts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    received: int = 0  # messages the live followers were delivered
    why: set[str] = field(default_factory=set)  # the conflicts' messages

    def took(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


async def _op(tally: Tally, kind: str, job: asyncio.Future[object] | object) -> None:
    started = time.perf_counter()
    try:
        await job  # type: ignore[misc]
    except Conflict as e:
        tally.conflicts[kind] += 1
        tally.why.add(f"{kind}: {e}"[:120])
    except (VaultError, OSError) as e:
        tally.errors.append(f"{kind}: {type(e).__name__}: {e}")
    else:
        tally.took(kind, time.perf_counter() - started)


async def _client(d: Deployment, i: int, until: float, tally: Tally) -> None:
    name = NAMES[i % len(NAMES)]
    home, secrets = d.members[name]
    rng = random.Random(i)
    work = d.root / "work" / f"c{i}"
    work.mkdir(parents=True, exist_ok=True)
    mine = [f"c{i}/doc{k}.txt" for k in range(3)]
    stored: list[str] = ["shared.txt"]
    while time.monotonic() < until:
        async with Api(d.url, d.fingerprint) as api:
            started = time.perf_counter()
            try:
                c = await Client.open(home, secrets, api, FOLLOWS_ENVIRONMENT)
                threads = await Threads.open(c, "load")
            except (VaultError, OSError) as e:
                tally.errors.append(f"login: {type(e).__name__}: {e}")
                await asyncio.sleep(0.5)
                continue
            tally.took("login", time.perf_counter() - started)
            if i % FOLLOW_EVERY == 0:  # a live follower until the end
                stop = asyncio.Event()

                async def got(_tid: str, _m: object) -> None:
                    tally.received += 1

                following = asyncio.create_task(threads.follow("general", got, stop=stop))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(following), max(0.0, until - time.monotonic()))
                stop.set()
                try:
                    await asyncio.wait_for(following, 30)
                except (VaultError, OSError) as e:
                    tally.errors.append(f"follow: {type(e).__name__}: {e}")
                return
            for _ in range(rng.randint(3, 12)):  # then log in again
                if time.monotonic() >= until:
                    break
                roll = rng.random()
                if roll < 0.35:
                    target = "shared.txt" if rng.random() < 0.1 else rng.choice(mine)
                    path = work / "up.txt"
                    path.write_bytes(os.urandom(rng.randint(1, 64 * 1024)))
                    await _op(tally, "upload", c.docs.put("load", path, target))
                    if target not in stored:
                        stored.append(target)
                elif roll < 0.65:
                    await _op(tally, "download", c.docs.get("load", rng.choice(stored), work / "down.bin", force=True))
                else:
                    await _op(tally, "post", threads.post("general", f"client {i}: {rng.random()}"))


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@pytest.mark.long
async def test_many_clients_at_once_get_no_server_error_and_memory_stays_flat(deployment: Deployment) -> None:
    d = deployment
    tally = Tally()
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    until = start + SECONDS

    async def sample() -> None:
        while True:
            samples.append((time.monotonic() - start, _rss(d.process.pid)))
            await asyncio.sleep(0.25)

    cpu_before, own_before = _cpu_seconds(d.process.pid), time.process_time()
    sampling = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(_client(d, i, until, tally) for i in range(CLIENTS)))
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    elapsed = time.monotonic() - start
    assert d.process.poll() is None, "the server exited under load"
    done = sum(len(v) for v in tally.latencies.values())
    warm = [rss for t, rss in samples if t <= SECONDS * WARM_UP] or [samples[0][1]]
    after = [rss for t, rss in samples if t > SECONDS * WARM_UP] or [samples[-1][1]]
    mib = 2**20
    print(f"\nload: {CLIENTS} clients, {elapsed:.1f} s: {done} operations ({done / elapsed:.0f}/s), "
          f"conflicts {dict(tally.conflicts)}, live messages delivered {tally.received}")
    for kind, values in sorted(tally.latencies.items()):
        print(f"  {kind:8} {len(values):6}  p50 {_quantile(values, 0.5) * 1000:7.1f} ms  "
              f"p99 {_quantile(values, 0.99) * 1000:7.1f} ms")
    for text in sorted(tally.why):
        print(f"  conflict: {text}")
    cpu = _cpu_seconds(d.process.pid) - cpu_before
    print(f"  CPU during the run: server {cpu:.1f} s, this process (every client) "
          f"{time.process_time() - own_before:.1f} s")
    print(f"  server RSS: {warm[-1] / mib:.0f} MiB after warm-up, peak {max(after) / mib:.0f} MiB, "
          f"end {samples[-1][1] / mib:.0f} MiB")
    assert not tally.errors, f"{len(tally.errors)} errors, first: {tally.errors[:5]}"
    assert {"login", "upload", "download", "post"} <= set(tally.latencies), tally.latencies.keys()
    assert tally.received > 0, "no live follower received a message"
    assert max(after) <= 3 * warm[-1], f"server memory grew from {warm[-1] / mib:.0f} to {max(after) / mib:.0f} MiB"


def test_the_server_is_alive_and_logged_no_error_after_the_load(deployment: Deployment) -> None:
    d = deployment
    alice = Member(d.root / "home-alice", "alice", d.root / "passphrase")
    listing = {x["name"] for x in alice.json("ls", "load")}
    assert "shared.txt" in listing and any(n.startswith("c1/") for n in listing), listing
    assert alice.json("thread", "read", "load", "general"), "no message in the thread"
    d.process.terminate()
    _, err = d.process.communicate(timeout=30)
    assert "Traceback" not in err and " ERROR " not in err, err[-3000:]
    shutil.rmtree(d.root / "work", ignore_errors=True)
