"""Member Vault core: pure functions and dataclasses, no I/O.

``vault.crypto`` holds the fenced primitives; the recipe modules (``keystore``, ``links``,
``chains``, ``teamkeys``, ``envelope``, ``invite``) build on it.
"""

__version__ = "0.1.0"
