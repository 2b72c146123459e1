"""What the stale coalition key hook (``client/cli/_common.py`` ``stale_keys_after`` -> ``coalitionrekey.when_stale``,
run after every command of the organization) costs a command that has nothing to do with coalitions.

Setup as bench/sync.py: a real ``mvault-server run`` (its own process, ``--log-format json --log-level debug``: one
log line per HTTP request), alice (the founder: NCC, no coalition key) and bob (a member: no NCC, no coalition key)
joined with the real CLI and unlocked; a team with bob a writer, a thread in it, a folder synced once, a second team
bob administers and a third with bob a reader. Each round runs, for each member: ``put`` (a new version of a 4 KiB
file), ``get`` (it, ``--force``), ``ls``, ``thread post``, a one-pass ``sync`` of the folder (nothing to do;
``MVAULT_SYNC_ASK=0``), ``team rotate`` (bob: the second team; alice: the third), and ``team add/rm``: a ``team
remove`` or ``team add`` in turn (bob: alice in the second team; alice: bob in the third), a command that ends on its
own chain link (no current view left for the hook). Each command three times, in an order that turns each round:
with the hook as it is ("hook"), with ``coalitionrekey.idle`` answering False, which is the decision of the code
before session 19 (fetch the chains whenever the command left no current view: "before"), and with
``stale_keys_after`` replaced by a function returning ``[]`` ("off"). All run through the same runner (``python
-c``), so the start costs the same. Figures per command: HTTP requests the server logged over it, and the medians of
wall seconds and CPU seconds (user + sys) of the ``mvault`` process and of the server over it. The machine is shared:
compare the requests and the CPU, not the walls. Nothing here asserts a time.

    python bench/stale_hook.py [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, free_port  # noqa: E402
from sync import BIN, Member, new_team  # noqa: E402

TEAM = "hooked"
RUNNER = """import sys
variant = sys.argv.pop(1)
if variant == "off":
    import client.cli._common as common
    async def nothing(c, seen=None):
        return []
    common.stale_keys_after = nothing
elif variant == "before":
    import client.coalitionrekey as coalitionrekey
    coalitionrekey.idle = lambda s, view: False
from client.cli.main import main
sys.exit(main())
"""
COMMANDS = ("put", "get", "ls", "thread post", "sync", "team rotate", "team add/rm")
VARIANTS = ("hook", "before", "off")
ROTATED = "rotated"
SWAPPED = "swapped"


def start(tmp: Path) -> tuple[subprocess.Popen[str], Path, Member, Member]:
    log = tmp / "server.log"
    port = str(free_port())
    init = subprocess.run([str(BIN / "mvault-server"), "init", "--data", str(tmp / "data"), "--port", port, "--json"],
                          capture_output=True, text=True, check=True)
    invite = json.loads(init.stdout)["invite"]
    with log.open("wb") as err:
        server = subprocess.Popen([str(BIN / "mvault-server"), "run", "--data", str(tmp / "data"), "--port", port,
                                   "--log-format",
                                   "json", "--log-level", "debug"], stdout=subprocess.DEVNULL, stderr=err, text=True)
    deadline = time.monotonic() + 60
    while "started" not in log.read_text():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    alice, bob = Member(tmp, "alice", server.pid), Member(tmp, "bob", server.pid)
    for m in (alice, bob):
        m.env["MVAULT_SYNC_ASK"] = "0"
    alice.run("join", invite, "--name", "alice")
    bob.run("join", alice.json("invite")["invite"], "--name", "bob")
    alice.unlock()
    bob.unlock()
    return server, log, alice, bob


def requests_in(log: Path, start: int) -> int:
    n = 0
    with log.open("rb") as f:
        f.seek(start)
        for line in f:
            try:
                n += json.loads(line).get("message") == "request"
            except ValueError:
                continue
    return n


def args_of(command: str, tmp: Path, name: str, round_: int, members: dict[str, bool]) -> list[str]:
    file = tmp / f"{name}.txt"
    if command == "put":
        file.write_bytes(os.urandom(4096) + f"{round_}".encode())
        return ["put", TEAM, str(file), "--as", f"{name}.txt", "--force-new-version"]
    if command == "get":
        return ["get", TEAM, f"{name}.txt", "-o", str(tmp / f"{name}.out"), "--force"]
    if command == "ls":
        return ["ls", TEAM]
    if command == "thread post":
        return ["thread", "post", TEAM, "general", f"round {round_} from {name}"]
    if command == "sync":
        return ["sync", TEAM, str(tmp / f"folder-{name}")]
    if command == "team rotate":  # each member's own team (the other one's removes and adds them in the other)
        return ["team", "rotate", ROTATED if name == "bob" else SWAPPED]
    team, other = (ROTATED, "alice") if name == "bob" else (SWAPPED, "bob")
    members[name] = not members[name]  # in the team before this command: removed; else added
    return ["team", "remove", team, other] if not members[name] else ["team", "add", team, other, "--role", "reader"]


def timed(m: Member, log: Path, variant: str, argv: list[str]) -> tuple[int, float, float, float]:
    """(requests, wall, client CPU, server CPU) of one command."""
    at = log.stat().st_size
    t0, c0, s0 = time.perf_counter(), cpu_seconds(), cpu_seconds(m.server)
    r = subprocess.run([sys.executable, "-c", RUNNER, variant, *argv], env=m.env, capture_output=True, text=True)
    wall, client, server = time.perf_counter() - t0, cpu_seconds() - c0, cpu_seconds(m.server) - s0
    if r.returncode != 0:
        raise SystemExit(f"{m.name} {argv[:3]} ({variant}) failed ({r.returncode}): {r.stderr[-2000:]}")
    time.sleep(0.05)  # the access log line is written after the answer
    return requests_in(log, at), wall, client, server


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="mvault-stalehook-") as t:
        tmp = Path(t)
        (tmp / "pass").write_text("correct horse battery staple\n")
        server, log, alice, bob = start(tmp)
        samples: dict[tuple[str, str, str], list[tuple[int, float, float, float]]] = {}
        try:
            new_team(alice, TEAM)
            alice.run("thread", "create", TEAM, "general")
            alice.run("team", "create", ROTATED, "--kind", "program")
            alice.run("team", "add", ROTATED, "bob", "--role", "admin")
            alice.run("team", "create", SWAPPED, "--kind", "program")
            alice.run("team", "add", SWAPPED, "bob", "--role", "reader")
            members = {"alice": True, "bob": True}  # alice in ROTATED, bob in SWAPPED
            for m in (alice, bob):
                folder = tmp / f"folder-{m.name}"
                folder.mkdir()
                (folder / f"{m.name}-notes.md").write_text("notes\n")
                m.run("sync", TEAM, str(folder))
                m.run("put", TEAM, str(tmp / "pass"), "--as", f"{m.name}.txt")
            for round_ in range(args.rounds):
                for m in (alice, bob):
                    for command in COMMANDS:
                        turn = round_ % len(VARIANTS)
                        for variant in VARIANTS[turn:] + VARIANTS[:turn]:
                            argv = args_of(command, tmp, m.name, round_, members)
                            samples.setdefault((m.name, command, variant), []).append(timed(m, log, variant, argv))
                loads.append(os.getloadavg()[0])
        finally:
            server.terminate()
            server.wait(10)
    print(f"{args.rounds} rounds, load {min(loads):.1f}-{max(loads):.1f}; medians (requests: median (min-max))")
    for who in ("alice", "bob"):
        for command in COMMANDS:
            line = [f"{who:5} {command:11}"]
            for variant in VARIANTS:
                s = samples[(who, command, variant)]
                reqs = [x[0] for x in s]
                wall, client, srv = (statistics.median(x[i] for x in s) for i in (1, 2, 3))
                line.append(f"{variant}: {statistics.median(reqs):g} req ({min(reqs)}-{max(reqs)}), wall {wall:.3f}"
                            f" s, CPU {client:.3f} s, server {srv:.3f} s")
            print("  ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
