"""``mvault export verify --check-chain``: the key that signed an export's manifest checked against the exporter's
member chain, as this account's verified and pinned chains show it (docs/lifecycle.md "What an export protects").

Without it an export proves only that the holder of the key in its own ``allowed_signers`` signed it; whoever
replaces the whole export (files, manifest, signature and ``allowed_signers``) passes, and only a fingerprint
compared out of band catches it. A reader with an account in the exporter's organization checks instead that the
manifest's organization is this account's, that its exporter is a member there, that its device is one of that
member's devices in the member chain with exactly the signing key, and that the device was not revoked at the
export's time, nor cut off by the Security Team or revoked since (a manifest's time is the signer's word: the
thief of a device dates what it signs as it likes). A failure is an ``IntegrityError`` (exit 3)."""

from __future__ import annotations

from dataclasses import dataclass

from client.client import Client
from client.exportcheck import Verified
from vault import sshsig
from vault.errors import IntegrityError


@dataclass(frozen=True)
class Signer:
    member: str
    name: str  # as the member chain names the member
    device: str
    device_name: str


async def check_exporter(c: Client, verified: Verified) -> Signer:
    m = verified.manifest
    view = await c.chains.view()
    if m.org != view.org.org_id:
        raise IntegrityError(f"the export is of organization {m.org}, not this account's ({view.org.org_id}): "
                             "check it from an account of the exporter's organization")
    ms = view.members.get(m.exporter.member)
    if ms is None:
        raise IntegrityError(f"the manifest's exporter {m.exporter.member} is no member of this organization")
    device = ms.devices.get(m.exporter.device)
    if device is None or sshsig.fingerprint(device.sign_public) != verified.fingerprint:
        raise IntegrityError(f"the key that signed the manifest ({verified.fingerprint}) is not device "
                             f"{m.exporter.device} of member {ms.name} in the member's chain: the export was not "
                             "signed by the member it names")
    if not device.active_at(m.time):
        raise IntegrityError(f"device {m.exporter.device} of member {ms.name} was not active at the export's time "
                             f"({m.time}: revoked or not added yet)")
    # The manifest's time is the signer's own word: an export signed by a device cut off or revoked since cannot
    # be told from one its thief made afterwards and dated before (review round 12).
    cut = view.org.incidents.cut_of(ms.member_id, device.device_id)
    if cut is not None or device.revoked is not None:
        why = (f"cut off by the Security Team at {cut.time}" if cut is not None else f"revoked at {device.revoked}")
        raise IntegrityError(f"device {m.exporter.device} of member {ms.name} was {why}: whoever holds its key can "
                             "sign an export dated before that; ask the exporter for a new export")
    return Signer(ms.member_id, ms.name, device.device_id, device.name)
