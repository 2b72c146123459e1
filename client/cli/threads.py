"""``mvault thread ...``: encrypted team threads from the command line.

``follow`` runs until Ctrl-C (or SIGTERM), reconnecting by itself; with ``--json`` it
prints one JSON object per message, one per line. As a guest of a coalition space (``mvault --space NAME thread
follow``), the messages shown are recorded in the guest's own organization's audit log as one ``read`` record a
minute at most, and one when it stops (client/guestacts.py); each minute it also carries the guest's own
organization's expulsions to the host (client/expulsions.py), as a new ``--space`` command does.

Whoever creates a thread name first chooses its expiry for everyone (``client/threads/info.py``):
``ls``, ``post``, ``read`` and ``follow`` always show who created the thread and how long it
keeps messages (a header line; under ``--json`` the keys ``creator``, ``creator_name``,
``creator_role``, ``created`` and ``expire``, on every message of ``read``/``follow``),
``create`` of a taken name names them, and ``post --expect-expire`` refuses a different expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import click

from client import expulsions
from client.audit.log import parse_since
from client.cli._common import Column, Ctx, Escaped, Time, emit_one, emit_rows, err, json_flag, out, when, with_session
from client.client import Client
from client.sanitize import escape, message_lines
from client.terminal import fold
from client.testknobs import follow_every
from client.threads.cache import Shown
from client.threads.info import (
    ThreadExists,
    ThreadInfo,
    check_expected_expire,
    duration_text,
    kept_text,
    member_label,
    parse_duration,
)
from client.threads.team import Threads, attachment_for
from vault.errors import NotFound, VaultError
from vault.messages import Attachment

_THREADS = (Column("thread", lambda r: r["name"] or f"({r['thread'][:12]}…: name under a key you do not hold)",
                   lambda r: r["name"] or f"({r['thread']}: name under a key you do not hold)"),
            Column("last activity", lambda r: Time(r["last_time"])), Column("messages", lambda r: r["messages"]),
            Column("unread", lambda r: r["unread"]),
            Column("expiry", lambda r: duration_text(r["expire"]) if r["expire"] else "keep"),
            Column("created by", lambda r: Escaped(ThreadInfo.from_json(r["thread"], r).creator_text())))


@click.group()
def thread() -> None:
    """Team threads: end-to-end encrypted, signed messages, delivered live."""


def _shown_json(m: Shown, s: Client, thread_name: str, info: ThreadInfo) -> dict[str, Any]:
    view = s.chains.cached
    guest_of = view.guest_of(m.sender) if view is not None else None
    name = member_label(view.members, m.sender, guest_of) if view is not None and m.sender in view.members \
        else m.sender
    return {**info.to_json(), "thread": thread_name, "pos": m.pos, "id": m.id, "time": m.time, "sender": m.sender,
            "sender_name": name, "sender_guest_of": guest_of, "device": m.device, "seq": m.seq, "gen": m.gen,
            "text": m.text, "attach": m.attach}


def _print_header(name: str, info: ThreadInfo) -> None:
    """The thread's creator and signed expiry, one line (folded on a terminal like a message line):
    the name and expiry of a thread are chosen by whoever created it first."""
    line = (f"thread {escape(name)}: created by {info.creator_text()} on {when(info.created)}; "
            f"{kept_text(info.expire)}")
    rows = fold(line, out.width) if out.is_terminal else [line]
    out.print("\n".join(rows), soft_wrap=True)


def _print_message(r: dict[str, Any], with_thread: bool = False) -> None:
    """One message: its first line after the header, each further line indented under a marker
    (``sanitize.CONTINUATION``), so that no line of a message can pass for another message."""
    where = f"[{escape(r['thread'])}] " if with_thread else ""
    lines = message_lines(f"{where}{when(r['time'])}  {escape(r['sender_name'])}: ", r["text"])
    lines += [f"    attached: {escape(a['name'])} (document version {escape(a['vid'])})" for a in r["attach"]]
    if out.is_terminal:  # the terminal would wrap a long line to column 0: fold it under the marker
        lines = [row for line in lines for row in fold(line, out.width)]
    out.print("\n".join(lines), soft_wrap=True)


@thread.command("create")
@click.argument("team_name", metavar="TEAM")
@click.argument("name", metavar="THREAD")
@click.option("--expire", default="0", help="messages disappear after this long (7d, 12h, 30m; 0 keeps them)")
@json_flag
@click.pass_obj
def thread_create(ctx: Ctx, team_name: str, name: str, expire: str) -> None:
    """Create a thread (writers and admins)."""
    seconds = parse_duration(expire)

    async def go(s: Client) -> str:
        return await (await Threads.open(s, team_name)).create(name, seconds)

    try:
        tid = with_session(ctx, go)
    except ThreadExists as e:  # the error names who took the name; --json also says it on stdout
        taken = {**e.info.to_json(), "error": e.code, "message": e.message, "thread": e.info.thread, "name": name}
        emit_one(ctx, taken, lambda: None)
        raise
    emit_one(ctx, {"thread": tid, "name": name, "expire": seconds},
             lambda: out.print(f"created thread {escape(name)} in {escape(team_name)}" +
                               (f" (messages disappear after {expire})" if seconds else ""), markup=False))


@thread.command("post")
@click.argument("team_name", metavar="TEAM")
@click.argument("name", metavar="THREAD")
@click.argument("text")
@click.option("--attach", "attach", multiple=True, help="a file to put in the vault and attach, or the name of "
              "a document already in the team (repeatable)")
@click.option("--expect-expire", "expect", default=None, metavar="DURATION",
              help="post only if the thread's messages disappear after exactly this long (7d, 12h, 30m; 0: only "
                   "if they are kept); its creator chose that")
@json_flag
@click.pass_obj
def thread_post(ctx: Ctx, team_name: str, name: str, text: str, attach: tuple[str, ...], expect: str | None) -> None:
    """Post TEXT to a thread (TEXT '-' reads it from standard input)."""
    expected = parse_duration(expect) if expect is not None else None
    if text == "-":
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as e:
            raise VaultError("the message on standard input is not UTF-8 text") from e

    async def go(s: Client) -> tuple[ThreadInfo, dict[str, Any]]:
        threads = await Threads.open(s, team_name)
        ct = await threads.resolve(name)  # an unknown thread fails before any upload ...
        info = await threads.info(ct)
        if expected is not None:
            check_expected_expire(info, expected, name)  # ... and so does an unexpected expiry
        attached, uploaded = [], False
        for item in attach:
            path, doc_name = attachment_for(item)
            if path is not None:
                await s.docs.put(team_name, path, doc_name)
                uploaded = True
            doc, records = await s.docs.find_doc(threads.team, doc_name)
            if not records:
                raise NotFound(f"no file or document named {item!r} to attach")
            attached.append(Attachment(doc_name, doc, records[-1].version_id))
        # The thread as just read, unless an upload took time since: then the post reads it again.
        shown = await threads.post(name, text, attached, expect_expire=expected, resolved=None if uploaded else ct)
        return info, {**info.to_json(), "thread": name, "pos": shown.pos, "id": shown.id,
                      "attach": [a.name for a in attached]}

    info, res = with_session(ctx, go)

    def human() -> None:
        out.print(f"posted to {escape(team_name)}/{escape(name)} (message {res['pos']})")
        _print_header(name, info)

    emit_one(ctx, res, human)


@thread.command("read")
@click.argument("team_name", metavar="TEAM")
@click.argument("name", metavar="THREAD")
@click.option("--since", default=None, help="only messages newer than this (2d, 12h, 30m) or a unix time")
@json_flag
@click.pass_obj
def thread_read(ctx: Ctx, team_name: str, name: str, since: str | None) -> None:
    """Read a thread (every message is verified first); marks it read."""
    start = parse_since(since, ctx.clock.now())

    async def go(s: Client) -> tuple[ThreadInfo, list[dict[str, Any]]]:
        threads = await Threads.open(s, team_name)
        msgs = await threads.read(name, start)
        info = await threads.about(name)
        return info, [_shown_json(m, s, name, info) for m in msgs]

    info, rows = with_session(ctx, go)

    def human() -> None:
        _print_header(name, info)
        if not rows:
            out.print("no messages", markup=False)
        for r in rows:
            _print_message(r)

    emit_one(ctx, rows, human)


@thread.command("ls")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def thread_ls(ctx: Ctx, team_name: str) -> None:
    """Threads of a team: last activity, messages kept, unread counts."""

    async def go(s: Client) -> list[dict[str, Any]]:
        return await (await Threads.open(s, team_name)).list()

    emit_rows(ctx, with_session(ctx, go), _THREADS)


@thread.command("follow")
@click.argument("team_name", metavar="TEAM")
@click.argument("name", metavar="[THREAD]", required=False)
@json_flag
@click.pass_obj
def thread_follow(ctx: Ctx, team_name: str, name: str | None) -> None:
    """Print new messages as they arrive, until Ctrl-C; reconnects by itself."""

    async def go(s: Client) -> None:
        threads = await Threads.open(s, team_name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        names: dict[str, tuple[str, ThreadInfo]] = {}
        if name is not None:  # who created it and its expiry, before anything else
            info = await threads.about(name)
            names[info.thread] = (name, info)
            if not ctx.as_json:
                _print_header(name, info)

        shown = [0]  # messages shown since the last ``read`` record (a guest's: client/guestacts.py)

        async def record_reads() -> None:
            count, shown[0] = shown[0], 0
            await ctx.record_space_acts([("read", count)] if count else [])

        failed: list[VaultError] = []

        every = follow_every()  # a bad MVAULT_TEST_FOLLOW_EVERY stops the command before it follows

        async def record_every() -> None:
            while True:
                await asyncio.sleep(every)
                await record_reads()
                if ctx.guest is None:
                    continue
                try:  # our own organization's removals, carried as a new command would (review round 15)
                    lines = await expulsions.carry(ctx.home, ctx.guest[0], ctx.clock, s)
                except VaultError as e:  # the host's server dropped or refused it: stop, as a command would
                    failed.append(e)
                    stop.set()
                    return
                for line in lines:
                    err.print_line(line)

        async def on_message(tid: str, m: Shown) -> None:
            shown[0] += 1
            if tid not in names:  # following all: a thread's header before its first message
                ct = threads.cache.threads[tid]
                names[tid] = (ct.name, await threads.info(ct))
                if not ctx.as_json:
                    _print_header(ct.name or f"({tid[:12]}…: name under a key you do not hold)", names[tid][1])
            r = _shown_json(m, s, *names[tid])
            if ctx.as_json:
                click.echo(json.dumps(r, sort_keys=True, ensure_ascii=True))
                sys.stdout.flush()
            else:
                _print_message(r, with_thread=name is None)

        async def on_state(state: str) -> None:
            if ctx.as_json:
                click.echo(json.dumps({"state": state}))
                sys.stdout.flush()
            elif state != "live":
                err.print_line(state)

        ticker = asyncio.ensure_future(record_every()) if ctx.space is not None else None
        try:
            await threads.follow(name, on_message, on_state, stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                await record_reads()
        if failed:
            raise failed[0]

    with_session(ctx, go)


COMMANDS: tuple[click.Command, ...] = (thread,)
