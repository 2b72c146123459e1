"""Folder sync: first sync, no-op sync, propagation with ``--watch``, memory; references in the same run.

Setup: a real ``mvault-server run`` in its own process (HTTPS on loopback, fsync'd storage in a
temporary directory), two members joined with the real ``mvault`` CLI (alice, then bob with her
invite), each unlocked once (``mvault unlock``), and a fresh team per measurement (bob a writer).
Every figure is a whole ``mvault`` command (process start, login, chain checks included).

Rows:

* first sync: a tree of ``--files`` files of 4 KiB and ``--big`` files of 8 MiB. Ours: ``mvault sync
  TEAM DIR`` by alice (up, into a fresh team), then ``mvault sync TEAM DIR`` by bob into an empty
  folder (down); seconds of both. Reference: ``age -r`` once per file of the same tree in a bash
  loop. Rounds alternate; bob's tree is compared with the original after each round.
* no-op sync: ``mvault sync`` of a folder of ``--noop-files`` unchanged files of 4 KiB (synced once
  before) beside ``git status`` on the same tree (its own git dir, committed once). Both must report
  nothing to do.
* no-op sync (watched), ``noop-watch``: the same, while ``mvault sync TEAM DIR --watch`` runs on that folder
  (it answers each ``mvault sync``: client/cli/fast.py); the watcher's CPU over each sync is in the detail.
* propagation: alice and bob each run ``mvault sync TEAM DIR --watch``; a file of 4 KiB of new bytes
  is written in alice's folder and the clock stops when bob's copy has exactly those bytes (polled
  every 2 ms). ``--samples`` files, one after the other; p50 and p99. No reference.
* memory: peak RSS (the client process and its children, summed, every 20 ms) of alice's ``sync`` up
  and of bob's ``sync`` down of a tree of ``--mem-files`` files totalling ``--mem-mib`` MiB (2 GiB).

The first-sync and no-op rows also give, in their detail, the CPU time (user + sys) of each ``mvault sync``
and of the server over it, and the load average: on a shared machine, compare those, not the wall times.

Nothing here asserts a time; the exit code is 1 only when a round trip broke (a tree differs, a file
did not arrive). Writes ``bench/results-sync.json``.

    python bench/sync.py [--quick] [--rounds R] [--files N] [--big N] [--noop-files N] [--samples N]
                         [--mem-mib N] [--mem-files N] [--out PATH] [--rows first,noop,noop-watch,propagation,memory]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MIB, ROOT, Row, Sampler, cpu_seconds, free_port, write_rows  # noqa: E402
from transfer import SMALL, age_version, age_workspace, same_file, timed, write_file  # noqa: E402

from client.sync.ask import in_step  # noqa: E402

BIN = Path(sys.executable).parent
MVAULT = str(BIN / "mvault")
LIMIT_MIB = 200
BIG_MIB = 8
ROWS = ("first", "noop", "noop-watch", "propagation", "memory")


class Member:
    def __init__(self, tmp: Path, name: str, server: int) -> None:
        self.name = name
        self.server = server  # the server's pid: its CPU time over each sync is counted
        self.cpu = (0.0, 0.0)  # CPU seconds (user + sys) of the last sync: the command's, the server's over it
        self.env = {**os.environ, "MVAULT_HOME": str(tmp / f"home-{name}"),
                    "MVAULT_PASSPHRASE_FILE": str(tmp / "pass")}

    def run(self, *args: str) -> str:
        r = subprocess.run([MVAULT, *args], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{self.name}: mvault {' '.join(args[:4])} ... failed ({r.returncode}): "
                             f"{r.stderr[-2000:]}{r.stdout[-500:]}")
        return r.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run("--json", *args))

    def unlock(self) -> None:
        self.env["MVAULT_SESSION"] = self.json("unlock", "--minutes", "60")["session"]
        del self.env["MVAULT_PASSPHRASE_FILE"]  # the session must carry every command from here

    def sync(self, team: str, folder: Path, sample: bool = False) -> tuple[float, int, list[dict[str, Any]]]:
        """One ``mvault --json sync TEAM DIR``: (seconds, peak RSS of it and its children, actions)."""
        t0, c0, s0 = time.perf_counter(), cpu_seconds(), cpu_seconds(self.server)
        proc = subprocess.Popen([MVAULT, "--json", "sync", team, str(folder)], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(proc.pid, children=True) if sample else None
        out, err = proc.communicate()
        elapsed = time.perf_counter() - t0
        self.cpu = (cpu_seconds() - c0, cpu_seconds(self.server) - s0)
        peak = sampler.stop() if sampler else 0
        if proc.returncode != 0:
            raise SystemExit(f"{self.name}: sync {team} failed ({proc.returncode}): {err[-2000:]}{out[-500:]}")
        return elapsed, peak, list(json.loads(out)) if out.strip() else []


def start_pair(tmp: Path, unlock_bob: bool = True) -> tuple[subprocess.Popen[str], Member, Member]:
    """A real server in its own process (data in ``tmp``), alice and bob joined with the CLI, their sessions
    unlocked (bob's only with ``unlock_bob``: else each of his commands reads the passphrase file)."""
    server = subprocess.Popen([str(BIN / "mvault-server"), "run", "--data", str(tmp / "data"), "--port",
                               str(free_port()), "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    alice, bob = Member(tmp, "alice", server.pid), Member(tmp, "bob", server.pid)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        alice.run("join", info["invite"], "--name", "alice")
        bob.run("join", alice.json("invite")["invite"], "--name", "bob")
        alice.unlock()
        if unlock_bob:
            bob.unlock()
    except BaseException:
        server.terminate()
        raise
    return server, alice, bob


def new_team(alice: Member, name: str) -> None:
    alice.run("team", "create", name, "--kind", "program")
    alice.run("team", "add", name, "bob", "--role", "writer")


def make_tree(root: Path, small: int, big: int, big_mib: int = BIG_MIB) -> None:
    """``small`` files of 4 KiB in 10 subfolders and ``big`` files of ``big_mib`` MiB, all distinct."""
    for i in range(small):
        d = root / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(SMALL))
    if big:
        (root / "big").mkdir(parents=True, exist_ok=True)
    for i in range(big):
        write_file(root / "big" / f"b{i:03d}.bin", big_mib)


def files_of(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def same_tree(a: Path, b: Path) -> bool:
    fa = files_of(a)
    return fa == files_of(b) and all(same_file(a / f, b / f) for f in fa)


def age_loop(tree: Path, out: Path, recipient: str) -> float:
    """``age -r`` once per file of ``tree`` into ``out`` (same layout), in one bash loop; seconds."""
    for d in {f.parent for f in files_of(tree)}:
        (out / d).mkdir(parents=True, exist_ok=True)
    loop = (f'cd "{tree}" && find . -type f -print0 | '
            f'while IFS= read -r -d "" f; do age -r "{recipient}" -o "{out}/$f.age" "$f"; done')
    s, _ = timed(["bash", "-c", loop])
    shutil.rmtree(out)
    return s


def first_sync(alice: Member, bob: Member, tmp: Path, recipient: str, args: argparse.Namespace) -> Row:
    tree = tmp / "tree"
    make_tree(tree, args.files, args.big)
    refs: list[float] = []
    ours: list[float] = []
    ups: list[float] = []
    downs: list[float] = []
    cpu: dict[str, list[float]] = {"up_client": [], "up_server": [], "down_client": [], "down_server": []}
    ok = True
    for r in range(args.rounds):
        refs.append(age_loop(tree, tmp / "age-out", recipient))
        team, a_dir, b_dir = f"first{r}", tmp / f"first{r}-alice", tmp / f"first{r}-bob"
        new_team(alice, team)
        shutil.copytree(tree, a_dir)
        up, _, _ = alice.sync(team, a_dir)
        cpu["up_client"].append(alice.cpu[0])
        cpu["up_server"].append(alice.cpu[1])
        down, _, _ = bob.sync(team, b_dir)
        cpu["down_client"].append(bob.cpu[0])
        cpu["down_server"].append(bob.cpu[1])
        ups.append(up)
        downs.append(down)
        ours.append(up + down)
        ok = ok and same_tree(tree, b_dir)
        shutil.rmtree(a_dir)
        shutil.rmtree(b_dir)
    shutil.rmtree(tree)
    size = args.files * SMALL / MIB + args.big * BIG_MIB
    return Row("first sync", "s", ours, refs, False,
               f"mvault sync up by one member into a fresh team, then down by another into an empty folder: "
               f"{args.files} files of 4 KiB + {args.big} of {BIG_MIB} MiB ({size:.0f} MiB), whole commands",
               f"age -r once per file of the same tree in a bash loop; {age_version()}",
               target_ratio=1.0, target_text=">= 1.0x",
               detail={"up_s": [round(x, 3) for x in ups], "down_s": [round(x, 3) for x in downs],
                       **{f"{k}_cpu_s": [round(x, 3) for x in v] for k, v in cpu.items()},
                       "tree_mib": round(size, 1), "trees_identical": ok, "load": os.getloadavg()[0]})


GENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b"}


def noop_tree(alice: Member, tmp: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The no-op rows' folder (made and synced once, shared by both rows) and the git command of its copy."""
    folder = tmp / "noop"
    git = ["git", f"--git-dir={tmp / 'noop.git'}", f"--work-tree={folder}"]
    if not folder.exists():
        make_tree(folder, args.noop_files, 0)
        new_team(alice, "noop")
        alice.sync("noop", folder)  # the first sync: every file up, the index written
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "tree"], ["status", "--porcelain"]):
            subprocess.run([*git, *cmd], env=GENV, check=True, capture_output=True)
    return folder, git


def noop_rounds(alice: Member, folder: Path, git: list[str], rounds: int,
                watcher: int | None = None) -> tuple[list[float], list[float], dict[str, list[float]], bool]:
    """``rounds`` of ``git status`` then ``mvault sync``, alternating: (ours, git's, CPU seconds of the client,
    the server and the ``watcher`` process (if any) over each sync, whether both reported nothing to do)."""
    refs: list[float] = []
    ours: list[float] = []
    quiet = True
    cpu: dict[str, list[float]] = {"client": [], "server": [], **({"watcher": []} if watcher else {})}
    for _ in range(rounds):
        t0 = time.perf_counter()
        st = subprocess.run([*git, "status", "--porcelain"], env=GENV, check=True, capture_output=True, text=True)
        refs.append(time.perf_counter() - t0)
        w0 = cpu_seconds(watcher) if watcher else 0.0
        s, _, actions = alice.sync("noop", folder)
        ours.append(s)
        cpu["client"].append(alice.cpu[0])
        cpu["server"].append(alice.cpu[1])
        if watcher:
            cpu["watcher"].append(cpu_seconds(watcher) - w0)
        quiet = quiet and not st.stdout.strip() and not [a for a in actions if a.get("action") != "in-step"]
    return ours, refs, cpu, quiet


def noop_sync(alice: Member, tmp: Path, args: argparse.Namespace) -> Row:
    """The cold row: no watcher, so each ``mvault sync`` is a whole pass."""
    folder, git = noop_tree(alice, tmp, args)
    ours, refs, cpu, quiet = noop_rounds(alice, folder, git, args.rounds)
    return Row("no-op sync", "s", ours, refs, False,
               f"mvault sync of a folder of {args.noop_files} unchanged files of 4 KiB (whole command: start, "
               f"login, chains, one listing, scan)", "git status --porcelain on the same tree (committed)",
               target_ratio=0.5, target_abs=("<", 1.5), target_text=">= 0.5x, < 1.5 s",
               detail={"files": args.noop_files, "nothing_to_do": quiet,
                       **{f"{k}_cpu_s": [round(x, 3) for x in v] for k, v in cpu.items()}, "load": os.getloadavg()[0]})


def noop_watch(alice: Member, tmp: Path, args: argparse.Namespace) -> Row:
    """The watched row: ``mvault sync TEAM DIR --watch`` runs on the same folder, and each ``mvault sync`` is
    answered by it (client/cli/fast.py: a cookie round trip through the file watcher, no pass)."""
    folder, git = noop_tree(alice, tmp, args)
    proc = watch(alice, "noop", folder, tmp / "noop-watch.log")
    try:
        home, root = alice.env["MVAULT_HOME"], os.path.realpath(folder)
        deadline = time.monotonic() + 600
        while not in_step(home, "noop", root):  # its first pass (a whole one) settled
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (tmp / "noop-watch.log").read_text()
                raise SystemExit(f"the watch of the no-op folder never answered: {log[-2000:]}")
            time.sleep(0.2)
        ours, refs, cpu, quiet = noop_rounds(alice, folder, git, args.rounds, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return Row("no-op sync (watched)", "s", ours, refs, False,
               f"mvault sync of the same {args.noop_files} files while `mvault sync --watch` runs on the folder "
               "(answered by the watcher: start, cookie round trip through its file watcher)",
               "git status --porcelain on the same tree (committed)",
               target_ratio=0.5, target_abs=("<", 1.5), target_text=">= 0.5x, < 1.5 s",
               detail={"files": args.noop_files, "nothing_to_do": quiet,
                       **{f"{k}_cpu_s": [round(x, 3) for x in v] for k, v in cpu.items()}, "load": os.getloadavg()[0]})


def watch(member: Member, team: str, folder: Path, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:
        return subprocess.Popen([MVAULT, "--json", "sync", team, str(folder), "--watch"], env=member.env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)


def arrive(path: Path, data: bytes, timeout: float) -> float | None:
    """Poll every 2 ms until ``path`` holds ``data``; the time it took, None after ``timeout``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if path.read_bytes() == data:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.002)
    return None


def propagation(alice: Member, bob: Member, tmp: Path, args: argparse.Namespace) -> Row:
    new_team(alice, "live")
    a_dir, b_dir = tmp / "live-alice", tmp / "live-bob"
    a_dir.mkdir()
    b_dir.mkdir()
    procs = [watch(alice, "live", a_dir, tmp / "watch-alice.log"), watch(bob, "live", b_dir, tmp / "watch-bob.log")]
    samples: list[float] = []
    lost = 0
    try:
        # Warm-up (not counted): both loops have made their first pass and see each other.
        data = os.urandom(SMALL)
        (a_dir / "warm.bin").write_bytes(data)
        if arrive(b_dir / "warm.bin", data, 60) is None:
            logs = [(tmp / f"watch-{m}.log").read_text()[-1000:] for m in ("alice", "bob")]
            raise SystemExit("propagation: the warm-up file never arrived: " + "\n".join(logs))
        for i in range(args.samples):
            time.sleep(0.3)  # alice's loop back at rest
            data = os.urandom(SMALL)
            t0 = time.perf_counter()
            (a_dir / f"p{i:04d}.bin").write_bytes(data)
            took = arrive(b_dir / f"p{i:04d}.bin", data, 30)
            if took is None:
                lost += 1
                continue
            samples.append(time.perf_counter() - t0)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if not samples:
        raise SystemExit("propagation: no file arrived")
    p50 = statistics.median(samples)
    p99 = percentile(samples, 0.99)
    return Row("propagation", "s", samples, None, False,
               "a 4 KiB file written in A's folder until B's copy has the same bytes; both run mvault sync --watch",
               target_abs=("<", 1.0), target_text="p50 < 1 s, p99 < 2 s", checks={"p99 < 2 s": p99 < 2.0 and not lost},
               detail={"p50_s": round(p50, 4), "p99_s": round(p99, 4), "max_s": round(max(samples), 4),
                       "samples": len(samples), "lost": lost})


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def memory(alice: Member, bob: Member, tmp: Path, args: argparse.Namespace) -> Row:
    new_team(alice, "mem")
    a_dir, b_dir = tmp / "mem-alice", tmp / "mem-bob"
    per = args.mem_mib // args.mem_files
    make_tree(a_dir, 0, args.mem_files, per)
    up_s, up_peak, _ = alice.sync("mem", a_dir, sample=True)
    down_s, down_peak, _ = bob.sync("mem", b_dir, sample=True)
    ok = same_tree(a_dir, b_dir)
    shutil.rmtree(a_dir)
    shutil.rmtree(b_dir)
    return Row("sync memory", "MiB", [max(up_peak, down_peak) / MIB], None, False,
               f"peak RSS of mvault sync (process and children) of a {per * args.mem_files} MiB tree "
               f"({args.mem_files} files): the larger of up and down",
               target_abs=("<", LIMIT_MIB), target_text=f"< {LIMIT_MIB} MiB",
               detail={"up_peak_mib": round(up_peak / MIB, 1), "down_peak_mib": round(down_peak / MIB, 1),
                       "up_s": round(up_s, 2), "down_s": round(down_s, 2), "tree_mib": per * args.mem_files,
                       "trees_identical": ok})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--big", type=int, default=20)
    ap.add_argument("--noop-files", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--mem-mib", type=int, default=2048)
    ap.add_argument("--mem-files", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-sync.json")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"which rows, comma-separated (default: all of {ROWS})")
    args = ap.parse_args()
    chosen = args.rows.split(",")
    if not chosen or any(r not in ROWS for r in chosen):
        ap.error(f"--rows takes some of {', '.join(ROWS)}")
    if args.quick:
        args.rounds, args.files, args.big, args.noop_files, args.samples = 2, 40, 2, 200, 5
        args.mem_mib, args.mem_files = 32, 2
    started = time.perf_counter()
    with age_workspace("mvault-sync-") as (tmp, recipient):
        server, alice, bob = start_pair(tmp)
        try:
            run_row = {"first": lambda: first_sync(alice, bob, tmp, recipient, args),
                       "noop": lambda: noop_sync(alice, tmp, args),
                       "noop-watch": lambda: noop_watch(alice, tmp, args),
                       "propagation": lambda: propagation(alice, bob, tmp, args),
                       "memory": lambda: memory(alice, bob, tmp, args)}
            rows = [run_row[name]() for name in ROWS if name in chosen]
        finally:
            for m in (alice, bob):
                subprocess.run([MVAULT, "lock"], env=m.env, capture_output=True)  # stop the unlock agent
            server.terminate()
            server.wait(10)
    write_rows(args.out, rows, args.rounds, started, digits=3, details=True)
    broken = {"first sync": lambda r: not r.detail["trees_identical"],
              "no-op sync": lambda r: not r.detail["nothing_to_do"],
              "no-op sync (watched)": lambda r: not r.detail["nothing_to_do"],
              "propagation": lambda r: bool(r.detail["lost"]),
              "sync memory": lambda r: not r.detail["trees_identical"]}
    return 1 if any(broken[row.row](row) for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
