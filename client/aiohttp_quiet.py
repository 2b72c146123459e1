"""aiohttp, imported without reading the system's certificate authorities.

aiohttp builds two default TLS contexts when ``aiohttp.connector`` is imported, and each reads the whole
system CA store (~60 ms of CPU per ``mvault`` command here). The client never uses them to trust a server:
a ``cert`` or ``spki`` pin connects through aiohttp's unverified context and checks the pin itself
(``client.api.PeerPin``), and a ``webpki`` pin passes its own ``ssl.create_default_context()``, made when
the pin is used. So the import runs with ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` pointing at nothing, and
both variables are given back their values (or absence) right after: aiohttp's default verified context
then trusts no authority at all, so a connection that used it by mistake would fail, never pass unchecked.
Import aiohttp through here first (``client.api`` does): whichever module imports it first decides.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@contextmanager
def no_system_ca_store() -> Iterator[None]:
    """OpenSSL's default verify paths point at nothing inside the block (the variables are restored after)."""
    saved = {name: os.environ.get(name) for name in CA_VARIABLES}
    os.environ["SSL_CERT_FILE"] = os.devnull
    os.environ["SSL_CERT_DIR"] = os.path.join(os.devnull, "none")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


with no_system_ca_store():
    import aiohttp  # noqa: E402

__all__ = ["aiohttp"]
