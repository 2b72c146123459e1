"""Every byte the CLI prints reaches a slow pipe, also under ``PYTHONUNBUFFERED`` (which the suite and many
service managers set). After uvloop has run and closed a loop, a write of more than 64 KiB to a pipe can return
short; with an unbuffered byte layer the rest of the text was silently dropped with exit status 0 (a
``mvault --json ls`` of 1,000 documents arrived cut at 64, 128 or 192 KiB). ``client.cli.main.whole_writes``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SIZE = 300_000

# A command of our own CLI, run through ``main()`` as the ``mvault`` entry point runs every command, that prints
# SIZE characters after running a uvloop loop (as every command that talks to the server does).
SCRIPT = f"""
import asyncio, sys, uvloop, click
from client.cli import main as m
@m.cli.command("bigout")
def bigout() -> None:
    uvloop.run(asyncio.sleep(0))
    for _ in range(4):
        click.echo("x" * {SIZE}, nl=False)
        sys.stderr.write("y" * {SIZE})
sys.argv = ["mvault", "bigout"]
m.main()
"""


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_slow_pipe_gets_every_byte(unbuffered: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    # a slow reader: the pipe is full when the writer's big writes come
    slow = ("import sys, time\nn = 0\nwhile b := sys.stdin.buffer.read1(16384):\n    n += len(b)\n"
            "    time.sleep(0.002)\nsys.stdout.write(str(n))")
    reader_out = subprocess.Popen([sys.executable, "-c", slow], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    reader_err = subprocess.Popen([sys.executable, "-c", slow], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.run([sys.executable, "-c", SCRIPT], env=env, stdout=reader_out.stdin,
                            stderr=reader_err.stdin, timeout=60, check=False)
    counts = []
    for reader in (reader_out, reader_err):
        assert reader.stdin is not None and reader.stdout is not None
        reader.stdin.close()
        counts.append(int(reader.stdout.read()))
        assert reader.wait(60) == 0
    assert writer.returncode == 0
    assert counts == [4 * SIZE, 4 * SIZE]
