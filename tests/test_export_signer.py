"""``mvault export verify --check-chain`` (issue 20): the key that signed an export's manifest is checked against the
exporter's member chain as the reader's account pins it, not only against the export's own ``allowed_signers``.
Whoever replaces the whole export (a forged manifest signed with a key of their own, its ``allowed_signers`` beside
it) passes the check without the chain (and ``ssh-keygen -Y verify``) and fails it (exit 3); so does an export
claiming another organization, and an export by a device revoked before the time it claims."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Org
from tests.test_export import ssh_verify, write
from vault import sshsig
from vault.exportmanifest import ALLOWED_SIGNERS, MANIFEST, NAMESPACE, SIGNATURE, canonical_json
from vault.keys import DeviceKeys


def exported(org: Org) -> Path:
    write(org.alice, "plan.md", "the plan\n")
    out = org.alice.home.parent / "export"
    org.alice.ok("export", "drafting", "--out", str(out))
    return out


def resign(folder: Path, change: dict[str, object] | None = None) -> Path:
    """The export re-signed by a key that is no device of anyone's (a forger replacing the whole export), the
    manifest changed by ``change`` (keys of the top level, or ``exporter``'s)."""
    forged = folder.parent / f"forged-{len(list(folder.parent.glob('forged-*')))}"
    shutil.copytree(folder, forged)
    manifest = json.loads((forged / MANIFEST).read_bytes())
    for key, value in (change or {}).items():
        if key in manifest["exporter"]:
            manifest["exporter"][key] = value
        else:
            manifest[key] = value
    raw = canonical_json(manifest) + b"\n"
    device = DeviceKeys.generate()
    (forged / MANIFEST).write_bytes(raw)
    (forged / SIGNATURE).write_text(sshsig.sign(device, raw, NAMESPACE))
    principal = manifest["exporter"]["principal"]
    (forged / ALLOWED_SIGNERS).write_text(sshsig.allowed_signers_line(principal, NAMESPACE, device.sign_public))
    return forged


def test_the_signing_device_is_the_exporters_in_the_pinned_chain(org: Org) -> None:
    out = exported(org)
    r = org.bob.ok("export", "verify", str(out), "--check-chain")
    assert "that key is device" in r.err and "of member alice in the member chain this account pins" in r.err, r.err


def test_a_whole_export_replaced_with_another_key_is_caught_only_with_the_chain(org: Org) -> None:
    forged = resign(exported(org))
    assert org.bob.ok("export", "verify", str(forged)).code == 0  # its own allowed_signers: it verifies
    if shutil.which("ssh-keygen"):
        assert ssh_verify(forged).returncode == 0  # and OpenSSH agrees: only the fingerprint or the chain can tell
    r = org.bob.run("export", "verify", str(forged), "--check-chain")
    assert r.code == 3 and "not device" in r.err and "not signed by the member it names" in r.err, r.err


@pytest.mark.parametrize(("change", "why"), [
    ({"org": "0" * 32}, "not this account's"),
    ({"member": "f" * 32}, "no member of this organization"),
    ({"device": "e" * 32}, "not device")])
def test_a_forged_exporter_is_refused(org: Org, change: dict[str, object], why: str) -> None:
    r = org.bob.run("export", "verify", str(resign(exported(org), change)), "--check-chain")
    assert r.code == 3 and why in r.err, r.err


def test_check_chain_is_for_verify_only(org: Org) -> None:
    assert org.alice.run("export", "drafting", "--out", str(org.alice.home.parent / "x"), "--check-chain").code == 2
