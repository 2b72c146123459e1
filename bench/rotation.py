"""Rotation: removing one member from an N-member team, client CPU, beside bare sealed boxes.

Ours: the real ``client.admin.remove_from_team`` on a real ``Client`` whose verified view
(org state, N member states, the team's state) was built by replaying real chains made in
memory with the vault code (member.create, org.invite + org.join per member, team.create
then one team.add per member, each with its key box), as a team grows with ``mvault team
add``. It runs ``Keyring.new_generation`` (a fresh TeamKey, one sealed box per remaining
member, the box hashes, the history blob) and ``Chains.append_team`` (``make_link``
signing, then ``clone(team).apply(...)``, the client's own check of the new link). The
server is a stub whose ``post`` records the request and returns: network, JSON, TLS and
the server's work are not part of this row, and no server is started (building a large org
through one costs an Argon2id per member and many requests).

Reference: N 32-byte keys sealed to N distinct X25519 public keys with PyNaCl alone
(``nacl.public.SealedBox(pk).encrypt(key)``), the bare cost of the boxes.

Rounds alternate reference and ours; medians and the ratio of medians (reference/ours) are
printed and written to ``bench/results-rotation.json``. Nothing here asserts a time.

    python bench/rotation.py [--quick] [--members N] [--rounds R] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nacl.public  # noqa: E402

from bench.common import Row, alternate, fmt, machine  # noqa: E402
from client.admin import remove_from_team  # noqa: E402
from client.client import Client  # noqa: E402
from client.home import Config, Secrets  # noqa: E402
from client.view import View  # noqa: E402
from security.authority import POLICY  # noqa: E402
from security.policy import TEAM_KINDS  # noqa: E402
from vault.chains import (  # noqa: E402
    MemberState,
    OrgState,
    TeamState,
    clone,
    member_id_for,
    replay_member,
    replay_org,
    replay_team,
    team_id_for,
)
from vault.crypto import labels  # noqa: E402
from vault.crypto import primitives as p  # noqa: E402
from vault.keys import DeviceKeys, PukKeys, short_id  # noqa: E402
from vault.links import Link, invite_public, make_link, parse_link  # noqa: E402
from vault.teamkeys import TeamKey, box_hash, open_team_box, seal_history  # noqa: E402

T0 = 1_700_000_000


# -- an org and a team of N members, as real chains --------------------------------------------


class Person:
    def __init__(self, name: str, t: int) -> None:
        self.name = name
        self.device = DeviceKeys.generate()
        self.puk = PukKeys.generate(1)
        self.id = member_id_for(self.device.sign_public)
        box = self.puk.seal_for_device(self.id, self.device.box_public)
        body = {
            "name": name,
            "device": {"id": self.device.device_id, "sign_pk": self.device.sign_public,
                       "box_pk": self.device.box_public, "name": "laptop", "kind": "device"},
            "puk": {"gen": 1, "sign_pk": self.puk.sign_public, "box_pk": self.puk.box_public},
            "puk_boxes": [{"device": self.device.device_id, "hash": box_hash(box)}],
        }
        self.chain = [make_link(chain=None, seq=1, prev=None, time=t, signer=self.id, device=self.device,
                                type_="member.create", body=body)]


class Builder:
    """A founder's organization with ``n - 1`` more admitted members and one circle team of all ``n``."""

    def __init__(self, n: int) -> None:
        self.time = T0
        self.founder = Person("founder", self.tick())
        self.people = [self.founder]
        secret = p.random_bytes(32)
        create = make_link(chain=None, seq=1, prev=None, time=self.tick(), signer=self.founder.id,
                           device=self.founder.device, type_="org.create",
                           body={"name": "bench-org", "founder_invite": invite_public(secret),
                                 "member_head": self.founder.chain[0].hash},
                           invite_secret=secret)
        self.org_links = [create]
        self.org_id = short_id(labels.H_ORG_ID, create.hash)
        for i in range(1, n):
            person = Person(f"member-{i:04d}", self.tick())
            self.people.append(person)
            secret = p.random_bytes(32)  # the founder (ncc) invites; the join is an admission
            self.org_link(self.founder, "org.invite", {"role": "member", "invite": invite_public(secret),
                                                       "expires": self.time + 3600, "note": "bench"})
            self.org_link(person, "org.join", {"invite": invite_public(secret), "member_head": person.chain[0].hash},
                          invite_secret=secret)
        # The team: created by the founder, then each member added with a team.add and a key box.
        nonce = p.random_bytes(16)
        self.team_id = team_id_for(self.org_id, nonce)
        self.key = TeamKey.generate(self.team_id, 1)
        box = self.key.seal_for(self.founder.id, 1, self.founder.puk.box_public)
        self.boxes = {self.founder.id: box}
        body = {"org": self.org_id, "org_seq": len(self.org_links), "kind": "circle", "name": "big-circle",
                "history": True, "nonce": nonce,
                "members": [{"member": self.founder.id, "role": "admin", "until": None}],
                "key": {"gen": 1, "canary": self.key.canary,
                        "boxes": [{"member": self.founder.id, "puk_gen": 1, "hash": box_hash(box)}]}}
        self.team_links = [make_link(chain=None, seq=1, prev=None, time=self.tick(), signer=self.founder.id,
                                     device=self.founder.device, type_="team.create", body=body)]
        for person in self.people[1:]:
            box = self.key.seal_for(person.id, 1, person.puk.box_public)
            self.boxes[person.id] = box
            head = self.team_links[-1]
            self.team_links.append(make_link(
                chain=self.team_id, seq=head.seq + 1, prev=head.hash, time=self.tick(), signer=self.founder.id,
                device=self.founder.device, type_="team.add",
                body={"member": person.id, "role": "writer", "until": None, "org_seq": len(self.org_links),
                      "key": {"gen": 1, "boxes": [{"member": person.id, "puk_gen": 1, "hash": box_hash(box)}]}}))

    def tick(self) -> int:
        self.time += 1
        return self.time

    def org_link(self, signer: Person, type_: str, body: dict[str, Any], invite_secret: bytes | None = None) -> None:
        head = self.org_links[-1]
        self.org_links.append(make_link(chain=self.org_id, seq=head.seq + 1, prev=head.hash, time=self.tick(),
                                        signer=signer.id, device=signer.device, type_=type_, body=body,
                                        invite_secret=invite_secret))

    def replay(self) -> View:
        """What the founder's client verifies on ``view()``: every chain replayed from its root."""
        members: dict[str, MemberState] = {person.id: replay_member(person.chain) for person in self.people}
        org: OrgState = replay_org(self.org_links, members, POLICY)
        team: TeamState = replay_team(self.team_links, org, members, POLICY, TEAM_KINDS)
        return View(org, members, {team.team_id: team})


# -- a Client without a server ------------------------------------------------------------------


class StubHome:
    """Only what ``Client.__init__`` reads: the config."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    def config(self) -> Config:
        return self._cfg


class StubApi:
    """Records the one POST ``append_team`` makes and answers at once (no network, no JSON)."""

    url = "bench://no-server"

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []

    async def post(self, path: str, body: Any, answer: Any = None) -> Any:
        self.posts.append((path, body))
        return None  # the answer is not read

    async def get(self, path: str, answer: Any = None) -> Any:
        raise AssertionError(f"the bench must not fetch anything ({path})")


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never really suspends (the stub answers at once): no event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the measured path awaited real I/O")


def make_session(b: Builder, view: View) -> tuple[Client, StubApi]:
    f = b.founder
    cfg = Config(url=StubApi.url, cert_fp="", org_root=view.org.root.hex(), member_id=f.id,
                 device_id=f.device.device_id, name=f.name)
    api = StubApi()
    s = Client(StubHome(cfg), Secrets(f.device, {1: f.puk}), api)  # type: ignore[arg-type]
    team = view.teams[b.team_id]
    assert (team.team_id, team.generation) == (b.key.team_id, b.key.gen)
    s.keys.remember(b.key)  # we hold the team key (opened earlier)
    return s, api


# -- the two sides -------------------------------------------------------------------------------


def ours(s: Client, view: View, team_name: str, target: str) -> float:
    s.chains.adopt(view)  # the verified view the command starts from (append_team's post clears it)
    t0 = time.process_time()
    rotated = run_sync(remove_from_team(s, team_name, target))
    elapsed = time.process_time() - t0
    assert rotated is True
    return elapsed


def reference(pks: list[nacl.public.PublicKey], keys: list[bytes]) -> float:
    t0 = time.process_time()
    boxes = [nacl.public.SealedBox(pk).encrypt(k) for pk, k in zip(pks, keys, strict=True)]
    elapsed = time.process_time() - t0
    assert len(boxes) == len(pks)
    return elapsed


def check_posted(api: StubApi, view: View, b: Builder, target: str) -> dict[str, Any]:
    """Outside the timing: the posted link is valid, drops the member, and its boxes open."""
    path, body = api.posts[-1]
    team = view.teams[b.team_id]
    link = parse_link(body.link)
    after = clone(team)
    after.apply(link, view.org, view.members, POLICY)
    assert path == f"/api/v1/teams/{b.team_id}/links" and link.type == "team.remove"
    assert target not in after.members and after.generation == team.generation + 1
    boxes = dict(body.boxes)
    assert set(boxes) == after.active_members(link.time) and target not in boxes
    someone = b.people[1]
    key = open_team_box(boxes[someone.id], someone.puk, b.team_id, someone.id,
                        after.boxes[(after.generation, someone.id)], after.canaries[after.generation])
    assert key.gen == after.generation
    return {"link_bytes": len(link.wire), "boxes_posted": len(boxes), "box_bytes": len(boxes[someone.id])}


def breakdown(s: Client, view: View, b: Builder, target: str, rounds: int) -> dict[str, float]:
    """Medians of the steps of ``ours``, each timed alone (same calls, same order)."""
    team = view.teams[b.team_id]
    old = b.key
    steps: dict[str, list[float]] = {k: [] for k in ("new_generation_s", "make_link_s", "clone_s", "apply_s")}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.process_time()
        out = fn()
        steps[name].append(time.process_time() - t0)
        return out

    for _ in range(rounds):
        key_body, _boxes = timed("new_generation_s", lambda: s.keys.new_generation(team, view, old, leaving=target))
        body = {"member": target, "key": key_body, "org_seq": view.org.seq}

        def sign(body: dict[str, Any] = body) -> Link:
            return make_link(chain=team.team_id, seq=team.seq + 1, prev=team.head,
                             time=max(int(time.time()), team.time), signer=s.session.me, device=s.session.device,
                             type_="team.remove", body=body)

        link: Link = timed("make_link_s", sign)
        copy_: TeamState = timed("clone_s", lambda: clone(team))

        def check(copy_: TeamState = copy_, link: Link = link) -> None:
            copy_.apply(link, view.org, view.members, POLICY)

        timed("apply_s", check)
    # The bare seals inside new_generation: the same TeamKey.seal_for calls, alone.
    key = TeamKey.generate(team.team_id, team.generation + 1)
    rest = sorted(team.active_members(int(time.time())) - {target})
    seals = []
    for _ in range(rounds):
        t0 = time.process_time()
        for mid in rest:
            ms = view.members[mid]
            key.seal_for(mid, ms.puk_gen, ms.puk_box_public)
        seals.append(time.process_time() - t0)
    t0 = time.process_time()
    for _ in range(rounds):
        seal_history(key, old)
    out = {k: round(statistics.median(v), 5) for k, v in steps.items()}
    out["of_which_seal_for_s"] = round(statistics.median(seals), 5)
    out["seal_history_s"] = round((time.process_time() - t0) / rounds, 6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="50 members (still 5 rounds)")
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-rotation.json")
    args = ap.parse_args()
    if args.quick:
        args.members = min(args.members, 50)
    if args.members < 3:
        ap.error("--members must be at least 3")
    if args.rounds < 5:
        ap.error("--rounds must be at least 5 (each row alternates reference and ours at least 5 times)")
    n = args.members

    t0 = time.perf_counter()
    b = Builder(n)
    built = time.perf_counter() - t0
    view = b.replay()
    replayed = time.perf_counter() - t0 - built
    team = view.teams[b.team_id]
    assert len(team.active_members(int(time.time()))) == n and team.holds_key(b.founder.id, int(time.time()))
    s, api = make_session(b, view)
    target = b.people[-1].id  # the last member added leaves; the other n - 1 get new boxes
    ref_pks = [nacl.public.PrivateKey.generate().public_key for _ in range(n)]
    ref_keys = [p.random_bytes(32) for _ in range(n)]
    setup = time.perf_counter() - t0

    t_wall = time.perf_counter()
    refs, mine = alternate(lambda: reference(ref_pks, ref_keys), lambda: ours(s, view, team.name, target),
                           args.rounds)
    wall = time.perf_counter() - t_wall
    posted = check_posted(api, view, b, target)
    steps = breakdown(s, view, b, target, args.rounds)

    row = Row(
        row="rotation", unit="s", ours=mine, reference=refs, higher_is_better=False,
        ours_what=(f"client CPU (time.process_time, one thread) of client.admin.remove_from_team removing one member "
                   f"from a {n}-member team whose key we hold, on a real Client over a view built by replaying "
                   f"real chains ({n} member chains, {len(b.org_links)} org links, {len(b.team_links)} team links: "
                   "team.create + one team.add per member): Keyring.new_generation (TeamKey.generate, "
                   f"{n - 1} TeamKey.seal_for boxes + box_hash, seal_history) and Client.append_team (make_link "
                   "signing, clone(team).apply(...) replay check of the new link, base64 of the boxes); the view "
                   "and team key were cached (no fetch). Network, JSON, TLS and the server are NOT included: "
                   "the Api is a stub whose post returns at once"),
        reference_what=(f"{n} 32-byte keys sealed to {n} distinct X25519 public keys with PyNaCl alone "
                        "(nacl.public.SealedBox(pk).encrypt(key)). Same primitive as TeamKey.seal_for: both are "
                        "libsodium crypto_box_seal (ephemeral X25519 + XSalsa20-Poly1305); ours seals an encoded "
                        "payload {team, gen, member, puk_gen, seed, names} instead of a bare 32-byte key"),
        target_ratio=0.5, target_abs=("<", 0.2), target_text=">= 0.5x, < 0.2 s",
        detail={"members": n, "removed": 1, "boxes": n - 1, "breakdown": steps, **posted},
    )
    result = {
        "rows": [row.as_json()],
        "machine": machine(),
        "members": n,
        "rounds": args.rounds,
        "quick": args.quick,
        "clock": "time.process_time (CPU of this process, single thread)",
        "setup_s": round(setup, 3),
        "setup_detail": {"build_chains_s": round(built, 3), "replay_chains_s": round(replayed, 3),
                         "org_links": len(b.org_links), "team_links": len(b.team_links),
                         "team_snapshots": len(team.snapshots)},
        "measure_wall_s": round(wall, 3),
        "ours_what": row.ours_what,
        "reference_what": row.reference_what,
        "breakdown": steps,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    status = {True: "met", False: "MISSED", None: "-"}[row.met]
    print(f"rotation, removing 1 of {n} members (client CPU, no server): ours {fmt(row.ours_median, 's')}, "
          f"PyNaCl {n} sealed boxes {fmt(row.reference_median, 's')}, ratio of medians "
          f"{row.ratio:.2f}x over {args.rounds} rounds (target {row.target_text}: {status})")
    print("  breakdown (medians): " + ", ".join(f"{k[:-2]} {fmt(v, 's')}" for k, v in steps.items()))
    print(f"  setup {setup:.1f} s (build {built:.1f} s, replay {replayed:.1f} s); wrote {args.out}")


if __name__ == "__main__":
    main()
