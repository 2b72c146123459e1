"""Fenced primitives. Only ``vault``'s own recipe modules import this package.

Everything here is a thin, typed wrapper around libsodium (PyNaCl bindings), argon2-cffi
and hashlib. No recipe logic lives here: labels, sizes and calls only.
"""
