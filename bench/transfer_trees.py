"""CPU per MiB of ``mvault put`` and ``mvault get``, two source trees side by side (a change's before and after).

Each tree gets its own real ``mvault-server run`` and its own member home, with the tree first on
``PYTHONPATH`` (the same virtualenv: the other tree's modules are never imported), compiled as a wheel install
would be. Rounds alternate the trees (put then get of the same file); a round's figures are the command's CPU
seconds (user + system, ``getrusage`` of the waited-for child) and the server's over the same time (``psutil``),
per MiB. Prints the medians and the ratio of medians, and the load average before and after: on a shared machine
wall time moves with the load, CPU per MiB much less. Nothing asserts a time.

    python bench/transfer_trees.py --base DIR [--ours DIR] [--mib N] [--rounds R] [--out PATH]

``--base`` is e.g. ``git archive main | tar -x -C DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, join_unlocked  # noqa: E402
from transfer import BIN, CpuUse, timed, write_file  # noqa: E402


@contextlib.contextmanager
def member_of(tree: Path, tmp: Path) -> Iterator[tuple[dict[str, str], CpuUse, CpuUse]]:
    """A server and an unlocked member running ``tree``'s code: the member's environment, CPU of put and get."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(tree / d) for d in
                                                                ("vault", "server", "client", "security"))],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "MVAULT_HOME": str(tmp / "home"),
           "MVAULT_PASSPHRASE_FILE": str(tmp / "pass")}
    (tmp / "pass").write_text("bench passphrase 123\n")
    server = subprocess.Popen([str(BIN / "mvault-server"), "run", "--data", str(tmp / "data"), "--port",
                               str(free_port()), "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        join_unlocked(str(BIN / "mvault"), info["invite"], env)
        yield env, CpuUse(server.pid), CpuUse(server.pid)
    finally:
        subprocess.run([str(BIN / "mvault"), "lock"], env=env, capture_output=True)  # stop the unlock agent
        server.terminate()
        server.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--ours", type=Path, default=ROOT)
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-transfer-trees.json")
    args = ap.parse_args()
    mvault = str(BIN / "mvault")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mvault-trees-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        big = tmp / "big.bin"
        write_file(big, args.mib)
        trees = {"base": args.base.resolve(), "ours": args.ours.resolve()}
        members = {}
        for name, tree in trees.items():
            (tmp / name).mkdir()
            members[name] = stack.enter_context(member_of(tree, tmp / name))
        for r in range(args.rounds):
            for name in (("base", "ours") if r % 2 == 0 else ("ours", "base")):
                env, put, get = members[name]
                timed([mvault, "put", "bench", str(big)], env, cpu=put)
                out = tmp / name / "out.bin"
                out.unlink(missing_ok=True)
                timed([mvault, "get", "bench", "big.bin", "-o", str(out)], env, cpu=get)
        rows: dict[str, dict[str, float]] = {}
        samples: dict[str, dict[str, list[float]]] = {}
        for what, index in (("put", 1), ("get", 2)):
            for side in ("command", "server_side"):
                med = {n: 1000 * statistics.median(getattr(members[n][index], side)) / args.mib for n in trees}
                rows[f"{what} {side}"] = med
                samples[f"{what} {side}"] = {n: [1000 * v / args.mib for v in getattr(members[n][index], side)]
                                             for n in trees}
                print(f"{what} {'client' if side == 'command' else 'server'} CPU ms/MiB (median of {args.rounds}): "
                      f"base {med['base']:.2f}, ours {med['ours']:.2f} ({med['ours'] / med['base']:.2f}x); rounds "
                      f"base {[round(1000 * v / args.mib, 2) for v in getattr(members['base'][index], side)]}, "
                      f"ours {[round(1000 * v / args.mib, 2) for v in getattr(members['ours'][index], side)]}")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    args.out.write_text(json.dumps({"cpu_ms_per_mib": rows, "rounds": samples, "mib": args.mib,
                                    "load": [load_before[0], load_after[0]]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
