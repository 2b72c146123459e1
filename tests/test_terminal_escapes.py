"""Untrusted text never controls the terminal (issue 13, finding 4).

Document names, thread names, messages, attachment names and server error texts full of C0
and C1 controls, DEL, ESC sequences, bidi controls and line separators go through the real
server and are shown by the real ``mvault`` CLI: no such code point reaches stdout or
stderr as itself, each shows as a visible escape, a message's further lines are indented so
that none passes for another member's message, and ``--json`` keeps every one escaped.
The sanitizer itself (client/sanitize.py) is checked with Hypothesis.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from client.sanitize import CONTINUATION, escape, is_unsafe, message_lines, neutralize, one_line
from client.terminal import fold
from server.context import STORAGE
from tests.conftest import MVAULT, Member, Org, Result
from vault.errors import PolicyDenied

C0 = [chr(c) for c in range(0x20)]
C1 = [chr(c) for c in range(0x80, 0xA0)]
BIDI = list("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
OTHER = ["\x7f", "\u2028", "\u2029", "\u200b", "\ufeff", "\u00ad", "\U000e0041", "\u3164"]
FORBIDDEN = C0 + C1 + BIDI + OTHER
LAYOUT = "\n"  # our own output uses newlines between lines; everything else forbidden must never appear
ROWS = LAYOUT + "\t"  # and a piped listing tabs between fields (a tab in a field is escaped: rows keep their fields)
OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # writes the clipboard where the terminal allows it
FORGED = "2026-12-04 19:45  alice: "
MESSAGE_LINE = re.compile(r"^(\[.*\] )?\d{4}-\d\d-\d\d \d\d:\d\d  ")


def chunks(chars: list[str], size: int = 8) -> list[str]:
    return ["".join(chars[i:i + size]) for i in range(0, len(chars), size)]


def shown(m: Member, *args: str, input: str | None = None, code: int = 0, env: dict[str, str] | None = None) -> Result:
    """Run the real CLI and read its output as bytes: ``Member.run`` reads text with universal
    newlines, which would turn a raw carriage return into a newline and hide it."""
    full = m.env() | {"COLUMNS": "1000"} | (env or {})  # 1000: rich wraps no line of a long escaped name
    p = subprocess.run([MVAULT, *args], env=full, capture_output=True, timeout=300,
                       input=None if input is None else input.encode("utf-8"), cwd=m.home.parent)
    r = Result(p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8"))
    assert r.code == code, f"mvault {args} exited {r.code}: {r.err}"
    assert "Traceback" not in r.err
    return r


def assert_clean(r: Result, expected: str = "", layout: str = LAYOUT) -> None:
    """No forbidden code point in the output (newlines only as layout, tabs too in a piped listing:
    ``ROWS``); every forbidden one of ``expected`` is there in its escaped form."""
    for c in FORBIDDEN:
        if c not in layout:
            assert c not in r.out and c not in r.err, f"raw {c!r} printed: {r.out!r} {r.err!r}"
    for c in expected:
        if is_unsafe(c):
            assert escape(c) in r.out + r.err, f"{escape(c)} missing: {r.out!r} {r.err!r}"


# A member with a modified client writes what the CLI's argv could not carry (NUL) and many
# names at once; the real client library does it, as such a member's program would.
WRITER = """
import asyncio, json, sys
from pathlib import Path
import client.docs
from client.cli._common import Ctx, with_session
from client.threads.team import Threads
client.docs.check_name = lambda name: name  # the modified client: no name check (the server sees no names)
team, path, docs, threads = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
async def go(s):
    await s.docs.put_many(team, [(path, n) for n in docs])
    t = await Threads.open(s, team)
    for n in threads:
        await t.create(n, 0)
with_session(Ctx(False), go)
"""


def write_hostile(m: Member, team: str, path: Path, docs: list[str], threads: list[str]) -> None:
    p = subprocess.run([sys.executable, "-c", WRITER, team, str(path), json.dumps(docs), json.dumps(threads)],
                       env=m.env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr


def test_hostile_names_and_messages_are_shown_escaped(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    src = tmp_path / "minutes.txt"
    src.write_text("minutes\n")
    doc_names = [f"doc{i}-{chunk}-end" for i, chunk in enumerate(chunks(FORBIDDEN))]
    doc_names.append(f"osc{OSC52}[bold]x[/bold]:warning:\\x1b")
    # thread names may not hold NUL, newlines or '/' (docs/format.md); everything else goes in
    thread_chars = [c for c in FORBIDDEN if c not in "\x00\n\r"]
    thread_names = [f"t{i}-{chunk}-end" for i, chunk in enumerate(chunks(thread_chars))]
    write_hostile(bob, "drafting", src, doc_names, thread_names)

    r = shown(alice, "ls", "drafting")
    assert_clean(r, "".join(FORBIDDEN), ROWS)
    assert "osc\\x1b]52;c;aGVsbG8=\\x07[bold]x[/bold]:warning:\\\\x1b" in r.out  # literal text stays literal
    assert [len(line.split("\t")) for line in r.out.splitlines()] == [6] * len(doc_names)  # a pipe: one row a doc
    r = shown(alice, "ls", "drafting", "--json")
    assert sorted(d["name"] for d in json.loads(r.out)) == sorted(doc_names)  # exact names, escaped as JSON
    assert r.out.strip().isascii() and "\x7f" not in r.out

    r = shown(alice, "thread", "ls", "drafting")
    assert_clean(r, "".join(thread_chars), ROWS)
    assert [len(line.split("\t")) for line in r.out.splitlines()] == [6] * len(thread_names)

    # a name with every forbidden code point argv can carry: refused (vault/names.py), the refusal escaped;
    # one the modified client stored is fetched into a file alice names, her output escaped
    argv_name = "".join(c for c in FORBIDDEN if c != "\x00")
    r = shown(bob, "put", "drafting", str(src), "--as", argv_name, code=1)
    assert_clean(r, argv_name[:1])
    assert r.out == "" and len(r.err.splitlines()) == 1
    stored = doc_names[1]  # no NUL in it: argv carries it
    r = shown(alice, "get", "drafting", stored, "-o", str(tmp_path / "got.txt"))
    assert_clean(r, stored, ROWS)
    assert [len(line.split("\t")) for line in r.out.splitlines()] == [4]  # a pipe: one row, four fields

    # messages: every forbidden code point (NUL from standard input), lines that imitate alice
    thread = thread_names[0]
    body = "hello " + "".join(FORBIDDEN)
    shown(bob, "thread", "post", "drafting", thread, "-", input=body)
    forged = f"see below\n{FORGED}hi\n\r{FORGED}overwritten\u2028{FORGED}separated\x1b[2K\x1b[1G{FORGED}redrawn"
    shown(bob, "thread", "post", "drafting", thread, "-", input=forged)
    attached = doc_names[1]  # no NUL in it: argv carries it
    shown(bob, "thread", "post", "drafting", thread, "the file", "--attach", attached)

    r = shown(alice, "thread", "read", "drafting", thread)
    assert_clean(r, body.replace("\n", "") + forged.replace("\n", "") + attached)
    lines = r.out.splitlines()
    headers = [line for line in lines if MESSAGE_LINE.match(line)]  # lines that read as a message
    assert len(headers) == 3 and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d  bob: ", h) for h in headers), lines
    assert not any(line.startswith(FORGED) for line in lines), lines
    assert f"{CONTINUATION}{FORGED}hi" in lines
    assert f"{CONTINUATION}\\r{FORGED}overwritten\\u2028{FORGED}separated\\x1b[2K\\x1b[1G{FORGED}redrawn" in lines
    assert any(line.startswith("    attached: doc1-") for line in lines)
    r = shown(alice, "thread", "read", "drafting", thread, "--json")
    assert [m["text"] for m in json.loads(r.out)][:2] == [body, forged]  # the exact texts, escaped as JSON
    assert r.out.strip().isascii() and "\x7f" not in r.out

    # on a terminal a long line would wrap to column 0: spaces could put a forged line there
    shown(bob, "thread", "post", "drafting", thread, "-", input="hi" + " " * 100 + FORGED + "wrapped")
    r = shown(alice, "thread", "read", "drafting", thread, env={"TTY_COMPATIBLE": "1", "COLUMNS": "60"})
    rows = r.out.splitlines()
    assert rows and all(cell_len(row) <= 60 for row in rows), rows
    assert not any(row.startswith(FORGED) for row in rows), rows
    assert sum(1 for row in rows if MESSAGE_LINE.match(row)) == 4, rows


HOSTILE_ERROR = f"the end{OSC52}\x1b[2K\r\nerror: nothing happened\u202e\x85[red]"


def test_server_error_texts_are_shown_escaped(org: Org) -> None:
    """A hostile server's error text: one line on stderr, every control escaped. (The honest
    server echoes client values only through repr, which escapes them: the real server is
    made hostile here by replacing its session lookup.)"""
    storage: Any = org.server.app[STORAGE]

    async def refuse(token: bytes) -> None:
        raise PolicyDenied(HOSTILE_ERROR)

    storage.session = refuse
    try:
        r = shown(org.alice, "whoami", code=1)
        assert_clean(r, HOSTILE_ERROR)
        assert len(r.err.splitlines()) == 1
        assert r.err.startswith("error: the end\\x1b]52;c;aGVsbG8=\\x07\\x1b[2K\\r\\nerror: nothing"), r.err

        async def teapot(token: bytes) -> None:  # an error code the client does not know
            raise web.HTTPBadRequest(text=HOSTILE_ERROR)

        storage.session = teapot
        r = shown(org.alice, "ls", "drafting", code=1)
        assert_clean(r, HOSTILE_ERROR)
        assert r.err.startswith("error: server error (HTTP 400): the end\\x1b]52;") and len(r.err.splitlines()) == 1
    finally:
        del storage.session


# -- the sanitizer itself -------------------------------------------------------------------

PROPS = settings(max_examples=400, deadline=None, database=None)
texts = st.text(st.one_of(st.sampled_from(FORBIDDEN + ["\\", "x", "1", "b", "u", "n", "é", "\u200d"]),
                          st.characters(codec="utf-8")), max_size=40)


def test_required_code_points_are_unsafe() -> None:
    for c in FORBIDDEN:
        assert is_unsafe(c), repr(c)
    for c in "aZ9 -_.é日\u00a0\u200c\u200d\u0301😀":  # letters, spaces, joiners, combining marks, emoji stay
        assert not is_unsafe(c), repr(c)


@PROPS
@given(texts)
def test_escape_output_is_safe_one_line_and_reversible(text: str) -> None:
    shown = escape(text)
    assert not any(is_unsafe(c) for c in shown)
    assert len(shown.splitlines()) <= 1
    # unambiguous: Python's unicode_escape undoes it, so distinct inputs never look the same
    assert shown.encode("ascii", "backslashreplace").decode("unicode_escape") == text
    assert escape(shown) == shown.replace("\\", "\\\\")
    assert neutralize(shown) == shown and one_line(shown) == shown  # the sinks never escape twice


@PROPS
@given(texts, texts)
def test_distinct_texts_are_shown_distinctly(a: str, b: str) -> None:
    if a != b:
        assert escape(a) != escape(b)


def test_a_typed_backslash_differs_from_the_control() -> None:
    assert escape("\x1b") == "\\x1b" and escape("\\x1b") == "\\\\x1b"
    assert escape("\u202e") == "\\u202e" and escape("\U000e0041") == "\\U000e0041"


@PROPS
@given(texts)
def test_neutralize_keeps_only_layout(text: str) -> None:
    assert not any(is_unsafe(c) and c != "\n" for c in neutralize(text))
    assert not any(is_unsafe(c) for c in one_line(text))
    assert "\n" not in one_line(text)


@PROPS
@given(st.text(max_size=20), texts)
def test_message_lines_cannot_pass_for_messages(header: str, text: str) -> None:
    lines = message_lines(escape(header), text)
    assert len(lines) == text.count("\n") + 1
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert not any(is_unsafe(c) for line in lines for c in line)
    assert all(unicodedata.category(line[0]) != "Cc" for line in lines if line)


@PROPS
@given(texts.map(escape), st.integers(1, 120))
def test_fold_keeps_rows_within_the_width_and_marks_them(line: str, width: int) -> None:
    rows = fold(line, width)
    if width <= 2 * len(CONTINUATION):
        assert rows == [line]
        return
    assert all(cell_len(row) <= width for row in rows)
    assert all(row.startswith(CONTINUATION) for row in rows[1:])
    assert rows[0] + "".join(row[len(CONTINUATION):] for row in rows[1:]) == line
