"""Document names: the one rule every name must pass, and names made from local paths.

A document name is a relative path with ``/`` between its segments (``notes/2027/plan.md``). The
server never sees it (it is inside the encrypted metadata); the client checks it whenever it makes
one (``put``, ``--as``), asks for one (``get``) or would use one as a local path (``get PREFIX/``),
and shows a name from another member that fails it escaped, never as a path. The rules, each with
its own refusal:

* not empty; at most ``MAX_NAME_BYTES`` bytes of UTF-8, each segment at most ``MAX_SEGMENT_BYTES``;
* no leading ``/`` (absolute), no empty segment (``a//b``, a trailing ``/``), no ``.`` or ``..``;
* no backslash (a separator elsewhere), no control or format character (Unicode categories Cc and
  Cf: C0, DEL, C1, bidi embeddings, overrides, isolates and marks, zero-width space, BOM, tags), no
  line or paragraph separator (Zl, Zp), no lone surrogate (Cs). The joiners U+200C and U+200D are
  the one exception, as in ``client.sanitize``: Persian, Indic scripts and emoji need them;
* in Unicode normalization form NFC (so one name has one spelling, and one document id).

Plain functions, no I/O: ``check_name`` raises ``BadName``; ``name_problem`` returns the reason or None.
"""

from __future__ import annotations

import os
import unicodedata

from vault.errors import BadName

MAX_NAME_BYTES = 1024
MAX_SEGMENT_BYTES = 255
_FORBIDDEN_CATEGORIES = {"Cc": "a control character", "Cf": "a format character (bidi or invisible)",
                         "Zl": "a line separator", "Zp": "a paragraph separator", "Cs": "a lone surrogate"}
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner (Cf): words and emoji need them


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid document name (one rule, in words), or None if it is one."""
    if not name:
        return "a name may not be empty"
    for char in name:
        what = _FORBIDDEN_CATEGORIES.get(unicodedata.category(char))
        if what is not None and char not in _JOINERS:
            return f"a name may not contain {what} (U+{ord(char):04X})"
    if "\\" in name:
        return "a name may not contain a backslash (use / between folders)"
    if unicodedata.normalize("NFC", name) != name:
        return "a name must be in Unicode NFC form (composed characters)"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"a name may be at most {MAX_NAME_BYTES} bytes of UTF-8 (this one has {size})"
    if name.startswith("/"):
        return "a name may not start with / (no absolute paths)"
    for segment in name.split("/"):
        if not segment:
            return "a name may not have an empty folder or file name (// or a trailing /)"
        if segment in (".", ".."):
            return f"a name may not have a {segment!r} segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"each folder or file name may be at most {MAX_SEGMENT_BYTES} bytes of UTF-8"
    return None


def check_name(name: str) -> str:
    """``name`` if it is a valid document name, else ``BadName`` naming the rule it breaks."""
    problem = name_problem(name)
    if problem is not None:
        raise BadName(f"{name!r} is not a valid document name: {problem}")
    return name


def check_prefix(prefix: str) -> str:
    """A folder prefix (``notes/``, or ``/`` for every document): a valid name followed by ``/``."""
    if prefix == "/":
        return ""
    if not prefix.endswith("/"):
        raise BadName(f"{prefix!r} is not a folder: a prefix ends with /")
    check_name(prefix[:-1])
    return prefix


def name_for_path(path: str) -> str:
    """The document name for a file given on the command line: the path as given (``./`` and ``a/../``
    folded, with ``/``) when it is relative and stays inside the current directory, else the file's
    name. Made NFC (macOS spells names NFD); ``check_name`` still judges the result."""
    norm = os.path.normpath(path)
    inside = not os.path.isabs(norm) and norm != os.pardir and not norm.startswith(os.pardir + os.sep)
    name = "/".join(norm.split(os.sep)) if inside else os.path.basename(norm)
    return unicodedata.normalize("NFC", name)


def name_in_folder(path: str, folder: str) -> str:
    """The document name for a file found under ``folder`` (``put -r``): its path relative to it, with ``/``
    (both given absolute, or both relative to the same directory)."""
    rel = os.path.relpath(path, folder)
    return unicodedata.normalize("NFC", "/".join(rel.split(os.sep)))
