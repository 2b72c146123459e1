"""Untrusted text made safe for a terminal: the one place that decides what is escaped.

Names, messages and error texts come from other members and from the server (which may be
hostile). Printed raw, an ESC/CSI/OSC sequence can erase and redraw lines, retitle the
window or write the clipboard (OSC 52); a newline or carriage return can forge a line that
looks like someone else's message; bidi controls reorder what is shown. Every such code
point is shown as a visible escape instead:

* unsafe: C0 controls (U+0000..U+001F), DEL, C1 controls (U+0080..U+009F), every format
  character (Unicode category Cf: bidi embeddings, overrides, isolates and marks, zero-width
  space, soft hyphen, BOM, tag characters, ...) except the joiners U+200C/U+200D that
  Persian, Indic scripts and emoji need, the line and paragraph separators U+2028/U+2029,
  lone surrogates, and the invisible Hangul fillers (U+115F, U+1160, U+3164, U+FFA0);
* escapes are Python's: ``\\n``, ``\\r``, ``\\t``, ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``.

``escape`` is for one field (a name, one line of a message): it also escapes the backslash,
so its output is unambiguous (literal ``\\x1b`` typed by someone shows as ``\\\\x1b``) and
reverses with Python's ``unicode_escape``. ``message_lines`` lays out a multi-line message
with every line after the first indented under a marker. ``neutralize`` is the last line of
defence at the output sink (the consoles, error lines): it escapes unsafe code points in
already composed text, keeping the newlines the layout itself uses, and leaves backslashes
alone so that escaped fields are not escaped twice.
"""

from __future__ import annotations

import unicodedata

CONTINUATION = "  | "  # prefix of a message's further lines: no line of a message can pass for a message line
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_JOINERS = frozenset("\u200c\u200d")
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_unsafe(char: str) -> bool:
    """True for a code point that must never reach a terminal as itself."""
    if char in _BIDI or char in _FILLERS:
        return True
    if char in _JOINERS:
        return False
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escaped(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _plain(text: str) -> bool:
    # str.isprintable is false for every Cc, Cf, Zl, Zp and Cs code point (and for harmless
    # spaces such as U+00A0, which then take the slow path and are kept).
    return text.isprintable() and _FILLERS.isdisjoint(text)


def escape(text: str) -> str:
    """One field, shown on one line: every unsafe code point and the backslash escaped."""
    if _plain(text) and "\\" not in text:
        return text
    return "".join(_escaped(c) if c == "\\" or is_unsafe(c) else c for c in text)


def message_lines(header: str, text: str) -> list[str]:
    """A message under its header (``"<time>  <sender>: "``): the first line follows the
    header, each further line starts with ``CONTINUATION``; every line escaped."""
    first, *rest = text.split("\n")
    return [header + escape(first)] + [CONTINUATION + escape(line) for line in rest]


def neutralize(text: str, keep: str = "\n") -> str:
    """Composed output (our words around fields): unsafe code points escaped except those in
    ``keep`` (by default the newline, which the layout uses); backslashes left as they are."""
    if _plain(text):
        return text
    return "".join(_escaped(c) if c not in keep and is_unsafe(c) else c for c in text)


def one_line(text: str) -> str:
    """Composed text that must stay one line (an error, a warning): newlines escaped too."""
    return neutralize(text, keep="")
