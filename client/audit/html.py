"""``mvault audit report --html``: the report as one self-contained HTML file.

The page loads nothing and runs nothing: inline CSS, and charts as inline SVG drawn by pygal (static
SVG from Python; its tooltip script is not requested, ``js=[]``, and the configuration script it always
writes is taken out of the tree before serialization). A Content-Security-Policy of ``default-src
'none'`` (inline styles only) makes a browser refuse any script, image, font or request, should anything
slip through. Every text that came from members or the server (names, messages, ids in findings, event
fields) is escaped for a terminal first (``client.names``/``client.sanitize``: control and bidi characters
shown as visible escapes) and then for HTML (``html.escape``); pygal escapes what it draws as XML.

The rules are not named here: the page shows whatever rules the report evaluated, in their order, so a
new rule appears without a change to this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape as html_escape
from typing import Any, Final

from client.audit.figures import Figure, figures, label
from client.audit.report import Report
from client.sanitize import escape as terminal_escape
from client.sanitize import one_line
from security.events import Event
from security.rules import Finding, RuleResult

CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
WARNING: Final = ("This file maps the organization: who is in which team, their devices, what they opened and "
                  "when. Keep it only on an encrypted disk of a Security Team member, never mail or upload it, "
                  "and delete it when the review is done.")
_STATUS_ORDER: Final = {"violated": 0, "alert": 1, "warning": 2, "ok": 3, "disabled": 4}
_LEVEL_ORDER: Final = {"violation": 0, "alert": 1, "warning": 2}
_COLORS: Final = ("#3b6ea5", "#c0392b", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#7f8c8d", "#27ae60")
_STYLE: Final[dict[str, Any]] = {
    "background": "#ffffff", "plot_background": "#ffffff", "foreground": "#222222", "foreground_strong": "#111111",
    "foreground_subtle": "#555555", "colors": _COLORS, "font_family": "sans-serif", "title_font_size": 18,
    "label_font_size": 12, "major_label_font_size": 12, "legend_font_size": 13}
_CSS: Final = """
body{font-family:sans-serif;margin:0 auto;max-width:1000px;padding:1em;color:#222;background:#fff}
.banner{border:3px solid #c0392b;background:#fdecea;padding:.8em 1em;margin:0 0 1em;font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em;width:100%}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#f2f2f2}
.status{font-weight:bold;text-transform:uppercase}
.violated,.violation{color:#fff;background:#c0392b}
.alert{color:#fff;background:#d35400}
.warning-status{background:#f9e79f}
.ok{background:#d5f5e3}
.disabled{color:#777}
figure{margin:1.5em 0;border:1px solid #ddd;padding:.5em}
figure svg{display:block;width:100%;height:auto}
figcaption{font-size:.9em;color:#444}
.finding{border-left:4px solid #ccc;padding:.2em .8em;margin:.8em 0}
.finding.violation{border-color:#c0392b;background:none;color:inherit}
.finding.alert{border-color:#d35400;background:none;color:inherit}
.finding.warning{border-color:#d4ac0d}
code{white-space:pre-wrap;word-break:break-all}
"""


def text(value: object) -> str:
    """Untrusted text for the page: shown on one line with control characters visible, then HTML-escaped."""
    return html_escape(terminal_escape(str(value)), quote=True)


def labelled(value: str) -> str:
    """A ``Names`` label (already escaped for a terminal) for the page: HTML-escaped."""
    return html_escape(value, quote=True)


def _when(t: int | None) -> str:
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _without_scripts(root: Any) -> Any:
    """pygal's XML filter: drop every ``script`` element (and comment) from the chart's tree."""
    for parent in list(root.iter()):
        for child in list(parent):
            if not isinstance(child.tag, str) or child.tag.rsplit("}", 1)[-1].lower() == "script":
                parent.remove(child)
    return root


def chart_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element: no script, no XML declaration, no external reference."""
    # pygal is imported here, not with the module: every `mvault audit ...` command loads this module, and
    # pygal (with importlib-metadata) takes a noticeable part of a second to import.
    import pygal
    from pygal.style import Style

    kind = {(False, False): pygal.Bar, (False, True): pygal.StackedBar,
            (True, False): pygal.HorizontalBar, (True, True): pygal.HorizontalStackedBar}[fig.horizontal, fig.stacked]
    height = max(300, 110 + 22 * len(fig.labels)) if fig.horizontal else 380
    chart = kind(js=[], disable_xml_declaration=True, style=Style(**_STYLE), width=960, height=height,
                 title=fig.title, x_label_rotation=0 if fig.horizontal else 60, show_minor_x_labels=fig.horizontal,
                 x_labels_major_every=None if fig.horizontal else max(1, len(fig.labels) // 15),
                 legend_at_bottom=True, print_values=False, no_data_text="nothing to show",
                 **{"x_title" if fig.horizontal else "y_title": fig.unit},
                 truncate_label=60, truncate_legend=60)
    chart.x_labels = fig.labels
    for title, values in fig.series:
        chart.add(title, values)
    chart.add_xml_filter(_without_scripts)
    svg: str = chart.render(is_unicode=True)
    return svg


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], table_id: str = "") -> str:
    """A table whose cells are already HTML (escaped by the caller)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status(status: str) -> str:
    css = "warning-status" if status == "warning" else status
    return f'<span class="status {labelled(css)}">{text(status)}</span>'


def _rule_table(results: list[RuleResult]) -> str:
    ordered = sorted(results, key=lambda r: _STATUS_ORDER.get(r.status, 5))
    rows = [(f'<a href="#rule-{text(r.rule)}">{text(r.rule)}</a>' if r.findings else text(r.rule),
             text(r.severity), _status(r.status), str(len(r.findings))) for r in ordered]
    return _table(("rule", "severity", "status", "findings"), rows, "rule-table")


def _summary(results: list[RuleResult]) -> str:
    by = {s: sum(1 for r in results if r.status == s) for s in _STATUS_ORDER}
    parts = [f"{by[s]} {s}" for s in ("violated", "alert", "warning", "ok", "disabled") if by[s]]
    return f"<p id=\"summary\">{len(results)} rules: {', '.join(parts)}.</p>"


def _figure(fig: Figure) -> str:
    rows = ""
    if len(fig.rows) > 1:
        rows = _table([labelled(h) for h in fig.rows[0]], ([labelled(c) for c in row] for row in fig.rows[1:]))
    return (f'<figure id="chart-{labelled(fig.key)}" class="chart">{chart_svg(fig)}'
            f"<figcaption>{labelled(fig.note)}</figcaption>{rows}</figure>")


def _event_row(rep: Report, index: int, ev: Event) -> list[str]:
    res = " ".join(f"{text(k)}={labelled(label(rep, v))}" for k, v in sorted(ev.res.items()))
    detail = " ".join(f"{text(k)}={labelled(label(rep, v) if isinstance(v, str) else str(v))}"
                      for k, v in sorted(ev.detail.items()))
    return [str(index), _when(ev.time), labelled(label(rep, ev.actor)) if ev.actor else "",
            labelled(label(rep, ev.device)) if ev.device else "", text(ev.action), text(ev.result), res, detail]


def _finding(rep: Report, f: Finding, events: dict[int, Event]) -> str:
    names = rep.names
    out = [f'<div class="finding {labelled(f.level)}"><p><span class="status {labelled(f.level)}">'
           f"{text(f.level)}</span> {labelled(names.text(one_line(f.message)))}</p>"]
    if f.next_command and f.next_command not in f.message:
        out.append(f"<p>next: <code>{labelled(names.command(one_line(f.next_command)))}</code></p>")
    rows = [_event_row(rep, i, events[i]) for i in f.events if i in events]
    if rows:
        out.append(_table(("#", "time", "actor", "device", "action", "result", "resources", "detail"), rows))
    elif f.events:
        out.append(f"<p>events {', '.join(map(str, f.events))} (no longer readable: retention)</p>")
    out.append("</div>")
    return "".join(out)


def _findings(rep: Report) -> str:
    events = dict(rep.input.events)
    out = []
    for r in sorted(rep.results, key=lambda r: _STATUS_ORDER.get(r.status, 5)):
        if not r.findings:
            continue
        out.append(f'<section id="rule-{text(r.rule)}" class="rule"><h3>{text(r.rule)} {_status(r.status)}</h3>')
        out.extend(_finding(rep, f, events) for f in sorted(r.findings, key=lambda f: _LEVEL_ORDER.get(f.level, 3)))
        out.append("</section>")
    return "".join(out) or "<p>No findings.</p>"


def _incidents(rep: Report) -> str:
    """The open incidents and their weekly reviews (due, overdue), or why this reader cannot see them."""
    seen = rep.incidents
    if not seen.readable:
        return f"<p>Incidents not shown: {text(seen.why)}</p>"
    if not seen.rows:
        return "<p>No open incident.</p>"
    rows = [(text(r["id"]), text(r["kind"]), text(r["member_name"]), _when(r["opened"]),
             f"{r['reviews_done']} of {r['reviews_planned']}",
             "all done" if r["next_review"] is None else _when(r["next_review"]),
             '<span class="status violated">overdue</span>' if r["overdue"] else "") for r in seen.rows]
    return _table(("id", "kind", "member", "opened", "reviews done", "next review due", "overdue"), rows,
                  "incident-table")


def render(rep: Report, since: int) -> str:
    """The whole page for the report ``rep``, its charts covering the events from ``since``."""
    v, now = rep.verified, rep.input.now
    head = (f'<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
            f"<title>Member Vault security report {_when(now)}</title><style>{_CSS}</style>")
    log = (f"log verified against {v.checkpoint.size} events (root {v.checkpoint.root.hex()[:32]}…); "
           f"events read: {v.events_read}; pruned by retention: {v.pruned}; last witnessed: {_when(v.last_witness)}")
    problems = "".join(f"<p class=\"finding violation\">PROBLEM: {text(p)}</p>" for p in v.problems)
    body = (f'<div class="banner" id="warning" role="alert"><strong>Confidential.</strong> {labelled(WARNING)}</div>'
            f"<h1>Security report</h1><p>Generated {_when(now)}; charts cover the events since {_when(since)}.</p>"
            f"<p id=\"log\">{labelled(log)}</p>{problems}"
            f'<section id="rules"><h2>Rules at a glance</h2>{_summary(rep.results)}{_rule_table(rep.results)}</section>'
            f'<section id="incidents"><h2>Incidents</h2>{_incidents(rep)}</section>'
            f'<section id="charts"><h2>Activity</h2>{"".join(_figure(f) for f in figures(rep, since))}</section>'
            f'<section id="findings"><h2>Findings and the events behind them</h2>{_findings(rep)}</section>')
    return f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>{body}</body></html>\n'
