"""The README's walk-through, run as written (issue 15): the code blocks marked ``<!-- walk-through -->`` in
README.md, every ``name$ mvault ...`` line on that member's machine against the real server, ending with the
Security Team's ``mvault audit report`` exiting 0 (no violated rule under the default protocols).

Read from the README itself, so the README cannot drift from what runs. A block marked
``<!-- walk-through: after N days -->`` first moves the server's and every member's clock N days. In a
command: ``mv1-…`` is the next invite code (the server's founder invite for the first join, then each
``mvault invite``'s output in order), ``[...]`` is optional and left out, a date ``YYYY-MM-DD`` becomes a date
180 days after the walk-through's clock (the README's dates are examples that would age), ``*`` is expanded
in the member's directory, ``# ...`` is a comment. Lines without ``name$`` are output.
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import Member, Result, ServerThread

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"^<!-- walk-through(?:: after (\d+) days)? -->$")
PROMPT = re.compile(r"^([a-z]+)\$\s+(.*)$")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
#: commands the walk-through may show besides ``mvault`` (the test runs the venv's mvault already)
SHELL_ONLY = ("export",)


@dataclass
class Block:
    after_days: int
    lines: list[tuple[str, str]]  # (member, command line as written)


def walkthrough_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if marker is None:
            continue
        assert lines[i + 1].strip() == "```", f"README line {i + 2}: a walk-through marker precedes a code block"
        commands = []
        for body in lines[i + 2:]:
            if body.strip() == "```":
                break
            prompt = PROMPT.match(body)
            if prompt:
                commands.append((prompt.group(1), prompt.group(2)))
        blocks.append(Block(int(marker.group(1) or 0), commands))
    return blocks


def words(command: str, day: str) -> list[str]:
    command = re.sub(r"\s*\[[^\]]*\]", "", command)
    found = shlex.split(DATE.sub(day, command), comments=True)
    return found[:found.index("|")] if "|" in found else found  # `mvault ... | less`: the mvault part


def test_the_walkthrough_blocks_are_the_whole_path() -> None:
    """The marked blocks hold the steps the report needs (so the test below cannot pass by running nothing)."""
    blocks = walkthrough_blocks(README.read_text())
    steps = [(who, " ".join(words(line, "DATE"))) for b in blocks for who, line in b.lines]
    for expected in [("alice", "mvault join mv1-… --name alice"), ("bob", "mvault join mv1-… --name bob"),
                     ("alice", "mvault team create drafting --kind program"),
                     ("bob", "mvault put drafting strategy.md"),
                     ("alice", "mvault get drafting strategy.md -o out.md"),
                     ("alice", "mvault role grant carol security --until DATE"),
                     ("alice", "mvault team create sec --kind security"), ("alice", "mvault leave sec"),
                     ("carol", "mvault audit witness")]:
        assert expected in steps, expected
    assert steps[-1] == ("carol", "mvault audit report")
    assert sum(b.after_days for b in blocks) > 60  # past probation


def test_following_the_readme_ends_with_a_clean_audit_report(server: ServerThread, make_member: Any,
                                                              tmp_path: Path) -> None:
    assert server.invite is not None
    invites: deque[str] = deque([server.invite])
    members: dict[str, Member] = {}
    offset = 0
    last: Result | None = None
    for block in walkthrough_blocks(README.read_text()):
        if block.after_days:
            offset += block.after_days * 86400
            server.advance(block.after_days * 86400)
            for m in members.values():
                m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(offset)
        day = (datetime.date.today() + datetime.timedelta(seconds=offset, days=180)).isoformat()
        for who, line in block.lines:
            args = words(line, day)
            if args[0] in SHELL_ONLY:
                continue
            assert args[0] == "mvault", f"the walk-through runs only mvault commands: {line}"
            if who not in members:
                members[who] = make_member(who)
                members[who].env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(offset)
            m = members[who]
            cwd = workdir(tmp_path, who)
            args = [invites.popleft() if a == "mv1-…" else a for a in args[1:]]
            args = [expanded for a in args for expanded in glob(cwd, a)]
            last = m.run(*args, cwd=cwd)
            assert last.code == 0, f"{who}$ {line}: exit {last.code}: {last.err}{last.out}"
            if args[0] == "invite":
                invites.append(re.search(r"mv1-\S+", last.out).group(0))  # type: ignore[union-attr]
    assert last is not None and words(line, day)[:3] == ["mvault", "audit", "report"]
    report = members["carol"].json("audit", "report")
    assert report["violated"] == []
    assert {r["rule"] for r in report["rules"] if r["status"] not in ("ok", "warning")} == set()


def glob(cwd: Path, arg: str) -> list[str]:
    """``arg`` expanded as the shell would in ``cwd`` (a pattern that matches nothing stays as written)."""
    found = sorted(str(p.relative_to(cwd)) for p in cwd.glob(arg)) if "*" in arg else []
    return found or [arg]


def workdir(tmp_path: Path, who: str) -> Path:
    """The member's working directory with the files the README's commands name."""
    cwd = tmp_path / f"work-{who}"
    if not cwd.exists():
        (cwd / "notes").mkdir(parents=True)
        (cwd / "strategy.md").write_text(f"# Strategy\n\n{who}'s draft.\n")
        (cwd / "notes" / "n1.md").write_text("note one\n")
        (cwd / "notes" / "n2.md").write_text("note two\n")
        (cwd / "drafts" / "2027").mkdir(parents=True)
        (cwd / "drafts" / "plan.md").write_text("plan\n")
        (cwd / "drafts" / "2027" / "budget.md").write_text("budget\n")
    return cwd
