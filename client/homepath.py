"""Where the client's home is: ``MVAULT_HOME``, default ``~/.mvault``.

Standard library only (``os``): the fast path of ``mvault sync`` (client/cli/fast.py) finds the home before
anything heavy is imported; client/home.py's ``default_home`` is the same path as a ``Path``.
"""

from __future__ import annotations

import os


def home_dir() -> str:
    """The client's home directory as a string (not resolved, not created)."""
    return os.environ.get("MVAULT_HOME") or os.path.join(os.path.expanduser("~"), ".mvault")
