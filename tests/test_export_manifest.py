"""Issue 20, exports as pure functions: safe paths from hostile document names (Hypothesis), the manifest's
canonical bytes, and SSH signatures (vault/exportmanifest.py, vault/sshsig.py)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault import sshsig
from vault.errors import BadSignature, EncodingError
from vault.exportmanifest import NAMESPACE, Entry, Exporter, Manifest, check_path, safe_paths
from vault.keys import DeviceKeys

ALPHABET = st.sampled_from(list("aA./\\%~ _-\x00\x1b\n\u202e\u0130é:") + ["..", "ß", "ss"])
NAMES = st.lists(st.lists(ALPHABET, max_size=12).map("".join), max_size=12)


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_safe_paths_never_leave_the_export_nor_collide(names: list[str]) -> None:
    paths = safe_paths(names)
    assert set(paths) == set(names)
    folded = [p.casefold() for p in paths.values()]
    assert len(set(folded)) == len(folded)  # no two files on one path, even on a case-insensitive disk
    folders = {"/".join(p.split("/")[:i]) for p in folded for i in range(2, p.count("/") + 1)}
    assert not folders & set(folded)  # no file where another's folder is
    for path in paths.values():
        assert check_path(path) == path  # the verifier accepts every path the exporter writes
        assert all(part and not part.startswith(".") and "\\" not in part for part in path.split("/"))


@pytest.mark.parametrize("path", ["files/../x", "files/.ssh/a", "x/a", "files", "/files/a", "files//a",
                                  "files/a\\b", "files/a\x1bb", "files/a%zz"])
def test_the_verifier_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(EncodingError):
        check_path(path)


def _manifest() -> Manifest:
    entry = Entry("files/plan.md", "plan.md", "ab" * 16, 2, "cd" * 16, "01" * 16, "bob\u202e", "02" * 16, 1_800_000_000,
                  5, "00" * 32)
    return Manifest("0f" * 16, "1e" * 16, "drafting", Exporter("03" * 16, "alice", "04" * 16, "03" * 16 + "@mvault"),
                    1_800_000_100, (entry,))


def test_the_manifest_is_canonical_ascii_and_parses_back() -> None:
    m = _manifest()
    raw = m.to_bytes()
    assert raw.isascii() and b"\\u202e" in raw and raw.endswith(b"}\n")
    assert Manifest.parse(raw) == m
    for bad in (raw.replace(b'{"exporter"', b'{ "exporter"'), raw.rstrip(b"\n"),
                raw.replace(b'"files/plan.md"', b'"files/../plan.md"'),
                raw.replace(b'"version":2', b'"version":-2'),
                raw.replace(b'"size":5', b'"size":5,"extra":1')):
        with pytest.raises(EncodingError):
            Manifest.parse(bad)
    twice = dataclasses.replace(m, files=m.files * 2)
    with pytest.raises(EncodingError, match="twice"):
        Manifest.parse(twice.to_bytes())


def test_ssh_signatures_verify_only_as_signed() -> None:
    device, other = DeviceKeys.generate(), DeviceKeys.generate()
    data = _manifest().to_bytes()
    sig = sshsig.sign(device, data, NAMESPACE)
    sshsig.verify(sig, data, NAMESPACE, device.sign_public)
    line = sshsig.allowed_signers_line("x@mvault", NAMESPACE, device.sign_public)
    assert sshsig.parse_allowed_signers_line(line) == ("x@mvault", NAMESPACE, device.sign_public)
    with pytest.raises(BadSignature):
        sshsig.verify(sig, data.replace(b"alice", b"alicf"), NAMESPACE, device.sign_public)
    with pytest.raises(BadSignature):
        sshsig.verify(sig, data, "file", device.sign_public)
    with pytest.raises(BadSignature):
        sshsig.verify(sig, data, NAMESPACE, other.sign_public)
    with pytest.raises(BadSignature):
        sshsig.verify(sig.replace("A", "B", 1), data, NAMESPACE, device.sign_public)
