"""What `mvault ls` pinning the heads it verified costs: CPU of `ls` of a team of many documents.

Setup as bench/sync.py: a real ``mvault-server run`` (its own process), alice and bob joined with the real
CLI; a team of ``--docs`` documents of 4 KiB stored by alice's ``mvault sync`` (up), ``--deleted`` of them then
deleted (removed from her folder, and a pass with ``--confirm-deletes``). Bob's home is copied
before his first command that lists the team, and each round puts that copy back, so that every round is a
first listing on this device. Rows, each round in turn (CPU seconds, user + sys, of the ``mvault`` process
and of the server over it; wall seconds too; the machine is shared, so compare CPU):

* ``first ls``: bob's ``mvault ls TEAM`` with no document pinned (this code fetches the chain of every listed
  deletion and pins it);
* ``again``: the same command once more (every head pinned already: nothing to save): the reference;
* ``first ls, base``: with ``--base DIR``, the first listing run by the code in DIR (a checkout of the commit
  before this change, ``git archive COMMIT | tar -x -C DIR``), which pins nothing.

Bob holds no session (each command reads his passphrase file: the same cost in every row). Nothing here
asserts a time.

    python bench/ls_pins.py [--docs N] [--deleted N] [--rounds R] [--base DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds  # noqa: E402
from sync import MVAULT, Member, make_tree, new_team, start_pair  # noqa: E402

TEAM = "many"
# Runs the CLI from a checkout instead of this tree (the editable install's finder taken out first).
BASE_RUNNER = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv.pop(1))
from client.cli.main import main
sys.exit(main())
"""


def timed_ls(bob: Member, base: Path | None) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) seconds of one ``mvault ls TEAM`` by bob."""
    cmd = [sys.executable, "-c", BASE_RUNNER, str(base)] if base is not None else [MVAULT]
    t0, c0, s0 = time.perf_counter(), cpu_seconds(), cpu_seconds(bob.server)
    r = subprocess.run([*cmd, "ls", TEAM], env=bob.env, capture_output=True, text=True)
    wall, client, server = time.perf_counter() - t0, cpu_seconds() - c0, cpu_seconds(bob.server) - s0
    if r.returncode != 0:
        raise SystemExit(f"ls failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, client, server


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--deleted", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", type=Path, default=None, help="a checkout of the code before the change")
    args = ap.parse_args()
    if args.base is not None:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(args.base / "client"), str(args.base / "vault"),
                        str(args.base / "security")], check=True)
    with tempfile.TemporaryDirectory(prefix="mvault-lspins-") as t:
        tmp = Path(t)
        (tmp / "pass").write_text("correct horse battery staple\n")
        server, alice, bob = start_pair(tmp, unlock_bob=False)
        rows: dict[str, list[tuple[float, float, float]]] = {"first ls": [], "again": [], "first ls, base": []}
        try:
            new_team(alice, TEAM)
            make_tree(tmp / "tree", args.docs, 0)
            alice.sync(TEAM, tmp / "tree")
            for path in sorted((tmp / "tree").rglob("*.*"))[:args.deleted]:
                path.unlink()
            alice.run("sync", TEAM, str(tmp / "tree"), "--confirm-deletes")
            bob.run("whoami")  # the team's chains and keys, once: not part of what is measured
            home = Path(bob.env["MVAULT_HOME"])
            shutil.copytree(home, tmp / "bob-home-before")
            for _ in range(args.rounds):
                for name, base in (("first ls", None), ("first ls, base", args.base)):
                    if name.endswith("base") and base is None:
                        continue
                    shutil.rmtree(home)
                    shutil.copytree(tmp / "bob-home-before", home)
                    rows[name].append(timed_ls(bob, base))
                    if base is None:
                        rows["again"].append(timed_ls(bob, None))
        finally:
            subprocess.run([MVAULT, "lock"], env=alice.env, capture_output=True)
            server.terminate()
            server.wait(10)
    print(f"{args.docs} documents ({args.deleted} deleted), {args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    for name, samples in rows.items():
        if samples:
            wall, client, server_cpu = (statistics.median(x) for x in zip(*samples, strict=True))
            print(f"{name:16} wall {wall:6.2f} s  client CPU {client:6.2f} s  server CPU {server_cpu:5.2f} s  "
                  f"(client CPU each: {', '.join(f'{s[1]:.2f}' for s in samples)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
