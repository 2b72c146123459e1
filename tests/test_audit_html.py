"""``mvault audit report --html``: the real server, the real CLI, and the page opened in a real browser.

Debian's chromium (``/usr/bin/chromium``), driven by playwright without its own browser download. The page
must render (the rule table, every chart's SVG), make no request but the file itself, log no console error,
run nothing, and show as text what a hostile server wrote into its log. A screenshot is kept under
``$MVAULT_ARTEFACTS`` (default ``.artefacts/`` in the repository, ignored by git).

Without chromium the browser test fails; ``MVAULT_SKIP_BROWSER=1`` skips it, outside CI only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.notes import Note
from server.recorder import record
from tests.conftest import Member, Org, ServerThread, join_member, security_team

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DAY = 86400
# What a hostile server writes into events it signs: markup, an attribute break-out, terminal escapes.
SCRIPT = "<script>window.__pwned=1</script>"
ATTRIBUTE = '"><img src=x onerror="window.__pwned=2">'
TERMINAL = "\x1b]52;c;cHduZWQ=\x07\x1b[2J"
CHARTS = ("access", "failed-logins", "opens", "rotations", "devices", "pending-shares")


@dataclass
class Reported:
    server: ServerThread
    carol: Member  # the Security Team
    path: Path
    report: dict[str, Any]  # the --json answer of the run that wrote the page


def _inject(server: ServerThread, note: Note) -> None:
    """The server is the attacker: it records (seals, appends, signs into its log) an event it made up."""
    loop = server._loop  # the server's own loop records it, as a handler would
    assert loop is not None
    asyncio.run_coroutine_threadsafe(record(server.app, note, "ok", None), loop).result(10)


def _offset(seconds: int, *members: Member) -> None:
    for m in members:
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(seconds)


@pytest.fixture
def reported(org: Org, make_member: Any, tmp_path: Path) -> Reported:
    """An organization with violations: bob wrote and read a document, dave joined and never came back (a
    dormant device 91 days on), bob was expelled, and the server logged hostile text. carol writes the page."""
    carol = security_team(org, make_member)
    doc = tmp_path / "plan.md"
    doc.write_text("strategy draft")
    org.bob.ok("put", "drafting", str(doc))
    for i in range(3):
        org.bob.ok("get", "drafting", "plan.md", "-o", str(tmp_path / f"copy{i}.md"))
    join_member(org, make_member, "dave")
    org.server.advance(91 * DAY)
    _offset(91 * DAY, org.alice, carol)
    org.alice.ok("remove", "bob", "--reason", "left")
    t = int(org.server.clock())
    _inject(org.server, Note("request.summary", res={"team": SCRIPT},
                             detail={"from": t, f"d:{SCRIPT}": 40, f"d:{ATTRIBUTE}": 40, f"d:{TERMINAL}": 40}))
    path = tmp_path / "out" / "report.html"
    path.parent.mkdir()
    r = carol.run("audit", "report", "--html", str(path), "--since", "100d", "--json")
    assert r.code == 1 and "Traceback" not in r.err, r.err  # rules are violated: exit 1, the page written all the same
    return Reported(org.server, carol, path, r.json())


def _artefacts() -> Path:
    where = Path(os.environ.get("MVAULT_ARTEFACTS") or Path(__file__).resolve().parent.parent / ".artefacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


def _browser_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("MVAULT_SKIP_BROWSER") == "1" and not os.environ.get("CI"):
        pytest.skip("no /usr/bin/chromium and MVAULT_SKIP_BROWSER=1")
    pytest.fail("the HTML report test needs Debian's chromium: apt-get install -y chromium (.ci/run does)")


@pytest.fixture
def browser_page() -> Iterator[Any]:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1100, "height": 900})
        finally:
            browser.close()


def test_the_page_renders_offline_runs_nothing_and_shows_hostile_text_as_text(reported: Reported,
                                                                             browser_page: Any) -> None:
    page = browser_page
    url = reported.path.resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url, wait_until="load")
    page.wait_for_timeout(300)  # an onerror handler or a late request would have fired by now
    page.screenshot(path=str(_artefacts() / "audit-report.png"), full_page=True)

    assert requests == [url], requests  # the file itself, nothing else
    assert problems == [], problems
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 0 and page.locator("img").count() == 0
    # The warning, the rule table (every rule of the report, in a row), every chart's SVG.
    assert page.locator("#warning").is_visible()
    assert "maps the organization" in page.locator("#warning").inner_text()
    table = page.locator("#rule-table")
    assert table.is_visible()
    rules = [r["rule"] for r in reported.report["rules"]]
    assert table.locator("tbody tr").count() == len(rules) and len(rules) >= 17
    first_cells = table.locator("tbody tr td:first-child").all_inner_texts()
    assert sorted(first_cells) == sorted(rules)
    for key in CHARTS:
        svg = page.locator(f"#chart-{key} svg")
        assert svg.count() == 1 and svg.is_visible(), key
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, (key, box)
    # What the report found, with the events behind it.
    violated = reported.report["violated"]
    assert "admin-count" in violated, violated  # drafting has one admin
    for rule in violated:
        assert page.locator(f"#rule-{rule} .finding.violation").count() >= 1, rule
    assert page.locator("#rule-failed-logins .finding table tbody tr").count() >= 1
    # Charts carry the organization's data: bob's opens, dave's dormant device, the expulsion's rotations.
    opens = page.locator("#chart-opens svg").text_content() or ""
    assert "bob" in opens
    devices = page.locator("#chart-devices svg").text_content() or ""
    assert "dave" in devices and "dormant" in devices
    assert "bob / drafting" in page.locator("#chart-rotations").inner_text()
    # Hostile text shows as text; the terminal escapes as visible escapes.
    body = page.locator("body").inner_text()
    assert SCRIPT in body and ATTRIBUTE in body, "the hostile strings are shown, as text"
    assert SCRIPT in (page.locator("#chart-access svg").text_content() or "")  # through the chart library too
    assert "\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J" in body and "\x1b" not in body


def test_the_file_is_private_and_never_replaced_without_force(reported: Reported) -> None:
    path = reported.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert b"<script" not in raw and b"\x1b" not in raw and b"http://" not in raw.replace(
        b'xmlns="http://www.w3.org/2000/svg"', b"")
    assert b"https://" not in raw and b"url(" not in raw and b"@import" not in raw
    r = reported.carol.run("audit", "report", "--html", str(path))
    assert r.code == 1 and r.err.startswith("error: ") and "exists" in r.err and "--force" in r.err, r.err
    assert path.read_bytes() == raw  # refused before anything was evaluated or written
    path.chmod(0o644)
    r = reported.carol.run("audit", "report", "--html", str(path), "--force")
    assert r.code == 1 and "wrote" in r.out, r.err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file, made 0600, took the old one's place
    link = path.parent / "link.html"
    link.symlink_to(path.parent / "elsewhere.html")
    r = reported.carol.run("audit", "report", "--html", str(link))
    assert r.code == 1 and "exists" in r.err and not (path.parent / "elsewhere.html").exists()
    other = path.parent / "other.html"
    reported.carol.fails("audit", "report", "--html", str(other), "--since", "soon", contains="--since")
    reported.carol.fails("audit", "report", "--html", str(path.parent / "no-such-dir" / "r.html"),
                         contains="cannot write")
    assert sorted(p.name for p in path.parent.iterdir()) == ["link.html", "report.html"]  # nothing else written
    r = reported.carol.run("audit", "report", "--since", "7d")
    assert r.code == 2 and r.err.startswith("error: --since and --force go with --html"), r.err


def test_a_rule_the_page_has_never_heard_of_is_shown_with_its_findings() -> None:
    """The page iterates over the rule results: a rule added later (another helper's, a newer version's)
    appears in the table and the findings without a change to client/audit/html.py."""
    from bench.report_html import make_report
    from client.audit import html
    from security.rules import Finding, RuleResult

    rep = make_report(8, 400)
    index, event = rep.input.events[3]
    future = RuleResult("future-rule", "high", True, "violated",
                        (Finding("future-rule", "violation", f"{SCRIPT} did {ATTRIBUTE}", "", (index,)),))
    page = html.render(dataclasses.replace(rep, results=[*rep.results, future]), rep.input.now - 90 * DAY)
    assert '<a href="#rule-future-rule">future-rule</a>' in page and 'id="rule-future-rule"' in page
    section = page[page.index('id="rule-future-rule"'):]
    assert html.text(SCRIPT) in section and "&lt;script&gt;" in section and SCRIPT not in page
    assert f"<td>{index}</td>" in section and f"<td>{event.action}</td>" in section  # the event behind it
