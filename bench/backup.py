"""Backup and check of a deployment, each beside a reference measured in the same run.

The deployment: the real server (``mvault-server run``, a temporary data directory), one member joined and
unlocked with the real ``mvault`` CLI, one team, and ``--size-mib`` of documents uploaded through the client
as ``--file-mib`` files (fewer, bigger files than a real organization's: the figures are about bytes; the
default is 2 GiB in 16 files of 128 MiB).

1. backup: ``mvault-server backup --data DIR --to FILE`` while the server serves DIR (the archive is fsync'd
   before it is renamed into place), beside ``tar -cf FILE -C DIR .`` of the same directory with the server
   stopped (no fsync; the detail also has tar followed by ``sync FILE``, the like-for-like figure);
2. check: ``mvault-server check --data DIR`` (while serving: every blob hashed, chains replayed, the audit log
   checked), beside ``sha256sum`` of every blob.

Rounds alternate reference and ours (the page cache is warm for both after the setup); the first round's
archive is also restored (``mvault-server restore``) and must check clean, and one more backup is taken
age-encrypted (``--age-recipient``): its time and peak memory are in the rows' detail. Rows "backup" and "check"
(target >= 0.5x each) go to ``--out`` (``bench/results-backup.json``). Nothing here asserts a time.

    python bench/backup.py [--quick] [--size-mib N] [--file-mib N] [--rounds R] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from transfer import age_workspace, timed, write_file  # noqa: E402

from bench.common import Row, free_port, join_unlocked, write_rows  # noqa: E402

BIN = Path(sys.executable).parent
MVAULT, SERVER = str(BIN / "mvault"), str(BIN / "mvault-server")


class Serving:
    """``mvault-server run`` on one data directory and port, stopped and started again between rounds."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.proc: subprocess.Popen[str] | None = None
        self.forced = 0

    def start(self) -> dict[str, str]:
        self.proc = subprocess.Popen([SERVER, "run", "--data", str(self.data), "--port", str(self.port), "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("mvault-server run did not start")
        return dict(json.loads(line))

    def stop(self) -> None:
        """Ctrl-C (the server's clean stop); SIGTERM, then SIGKILL, if it has not ended 20 s later (counted in
        ``forced``: a server that does not stop on Ctrl-C is a finding, not a reason to hang the bench)."""
        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(20)
                    break
                except subprocess.TimeoutExpired:
                    self.forced += 1
        self.proc = None


def deployment(tmp: Path, serving: Serving, size_mib: int, file_mib: int) -> tuple[dict[str, str], int]:
    """Start the server, join, unlock, and upload ``size_mib`` in files of ``file_mib``; (env, files)."""
    info = serving.start()
    env = {**os.environ, "MVAULT_HOME": str(tmp / "home"), "MVAULT_PASSPHRASE_FILE": str(tmp / "pass")}
    join_unlocked(MVAULT, info["invite"], env)
    files = max(1, size_mib // file_mib)
    path = tmp / "doc-0.bin"
    write_file(path, file_mib)
    for i in range(files):
        timed([MVAULT, "put", "bench", str(path)], env)
        nxt = tmp / f"doc-{i + 1}.bin"
        os.rename(path, nxt)  # the next document: another name (and fresh keys, so other ciphertext)
        path = nxt
    path.unlink()
    return env, files


def blob_bytes(data: Path) -> int:
    return sum(f.stat().st_size for f in (data / "blobs").rglob("*") if f.is_file())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--file-mib", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-backup.json")
    args = ap.parse_args()
    if args.quick:
        args.size_mib, args.file_mib, args.rounds = 32, 8, 2
    started = time.perf_counter()
    with age_workspace("mvault-backup-") as (tmp, recipient):
        data = tmp / "data"
        serving = Serving(data, free_port())
        env: dict[str, str] = {}
        try:
            env, files = deployment(tmp, serving, args.size_mib, args.file_mib)
            stored = blob_bytes(data)
            backup_ref: list[float] = []
            tar_synced: list[float] = []
            backup_ours: list[float] = []
            check_ref: list[float] = []
            check_ours: list[float] = []
            restore_ok = False
            encrypted_s, encrypted_peak = 0.0, 0
            archive_bytes = 0
            for r in range(args.rounds):
                serving.stop()
                s, _ = timed(["tar", "-cf", str(tmp / "ref.tar"), "-C", str(data), "."])
                backup_ref.append(s)
                flush, _ = timed(["sync", str(tmp / "ref.tar")])  # what tar left unwritten (ours fsyncs)
                tar_synced.append(s + flush)
                (tmp / "ref.tar").unlink()
                serving.start()
                archive = tmp / "ours.tar"
                s, _ = timed([SERVER, "backup", "--data", str(data), "--to", str(archive)])
                backup_ours.append(s)
                archive_bytes = archive.stat().st_size
                if r == 0:
                    timed([SERVER, "restore", "--from", str(archive), "--data", str(tmp / "restored")])
                    restore_ok = blob_bytes(tmp / "restored") == stored
                    shutil.rmtree(tmp / "restored")
                    archive.unlink()
                    # Once encrypted (age, streamed through pyrage): its time and the backup process's peak memory.
                    encrypted_s, encrypted_peak = timed([SERVER, "backup", "--data", str(data), "--to", str(archive),
                                                         "--age-recipient", recipient], sample=True)
                archive.unlink()
                blobs = sorted(str(f) for f in (data / "blobs").rglob("*") if f.is_file())
                s, _ = timed(["sha256sum", *blobs])
                check_ref.append(s)
                s, _ = timed([SERVER, "check", "--data", str(data)])
                check_ours.append(s)
        finally:
            if "MVAULT_SESSION" in env:
                subprocess.run([MVAULT, "lock"], env=env, capture_output=True)  # stop the unlock agent
            serving.stop()
    detail = {"deployment_mib": round(stored / (1 << 20), 1), "documents": files, "file_mib": args.file_mib,
              "archive_bytes": archive_bytes, "restore_ok": restore_ok,
              "server_stops_forced": serving.forced, "encrypted_backup_s": round(encrypted_s, 2),
              "encrypted_backup_peak_mib": round(encrypted_peak / (1 << 20), 1)}
    synced = statistics.median(tar_synced)
    backup_detail = {**detail, "reference_tar_then_sync_s": round(synced, 2),
                     "ratio_to_tar_then_sync": round(synced / statistics.median(backup_ours), 2)}
    rows = [
        Row("backup", "s", backup_ours, backup_ref, False, "mvault-server backup while serving (fsync'd)",
            "tar -cf of the data directory, server stopped", target_ratio=0.5, target_text=">= 0.5x",
            detail=backup_detail, checks={"restore of the first archive checks clean": restore_ok}),
        Row("check", "s", check_ours, check_ref, False, "mvault-server check while serving",
            "sha256sum of every blob", target_ratio=0.5, target_text=">= 0.5x", detail=detail),
    ]
    write_rows(args.out, rows, args.rounds, started, digits=2, details=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
