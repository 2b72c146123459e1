"""This member's keys: member key (PUK) generations and team key generations, each opened from a
box the chain commits to (or down a history chain), checked, and kept for the command."""

from __future__ import annotations

from typing import Any

from client.session import Session
from client.view import Chains, View, team_link_time
from security.authority import POLICY
from vault.chains import TeamState
from vault.errors import IntegrityError, NotFound, PolicyDenied
from vault.keys import PukKeys
from vault.teamkeys import TeamKey, box_hash, open_history, open_team_box, seal_history
from vault.wire.schemas import PukBoxes, TeamBoxes


class Keyring:
    def __init__(self, session: Session, chains: Chains) -> None:
        self.session = session
        self.chains = chains
        self._box_cache: dict[str, dict[int, bytes]] = {}
        self._boxes_at = 0  # chains.links_posted when the boxes were fetched
        self._key_cache: dict[tuple[str, int], TeamKey] = {}

    async def puk(self, gen: int) -> PukKeys:
        """One of our PUK generations: from the keystore, a box for this device, or history."""
        s = self.session
        if gen in s.secrets.puks:
            return s.secrets.puks[gen]
        view = await self.chains.view()
        mine = view.members[s.me]
        if gen not in mine.puks:
            raise NotFound(f"no member key generation {gen}")
        if gen < mine.puk_gen:
            newer = await self.puk(gen + 1)
            prev = mine.puks[gen + 1].prev
            if prev is None:
                raise NotFound(f"member key generation {gen} has no history")
            puk = newer.open_previous(prev)
            if puk.sign_public != mine.puks[gen].sign_public:
                raise IntegrityError("member key history does not match the member chain")
        else:
            res = await s.api.get("/api/v1/puk-boxes", PukBoxes)
            box = next((i.box for i in res.boxes if i.puk_gen == gen), None)
            if box is None:
                raise NotFound(f"no key box for your member key generation {gen}")
            if mine.puks[gen].box_hashes.get(s.device.device_id) != box_hash(box):
                raise IntegrityError("the server sent a PUK box that the member chain does not commit to")
            puk = PukKeys.open_device_box(s.device, s.me, gen, box)
            if puk.sign_public != mine.puks[gen].sign_public:
                raise IntegrityError("the PUK box holds a key the member chain does not name")
        s.secrets.puks[gen] = puk
        s.home.save_secrets(s.secrets)
        return puk

    async def boxes(self, team: TeamState) -> dict[int, bytes]:
        """Our team key boxes in ``team`` by generation (fetched again after we appended a link)."""
        if self._boxes_at != self.chains.links_posted:
            self._box_cache.clear()  # a link may have added boxes (rotation, share)
            self._boxes_at = self.chains.links_posted
        if team.team_id not in self._box_cache:
            res = await self.session.api.get(f"/api/v1/teams/{team.team_id}/boxes", TeamBoxes)
            self._box_cache[team.team_id] = {i.gen: i.box for i in res.boxes}
        return self._box_cache[team.team_id]

    def remember(self, key: TeamKey) -> None:
        """Keep a team key opened elsewhere (by whoever holds it verified)."""
        self._key_cache[(key.team_id, key.gen)] = key

    async def team_key(self, team: TeamState, gen: int) -> TeamKey:
        """Generation ``gen`` of a team key: from our box, or down the history chain."""
        me = self.session.me
        cache_key = (team.team_id, gen)
        if cache_key in self._key_cache:
            return self._key_cache[cache_key]
        commitment = team.boxes.get((gen, me))
        if commitment is not None:
            box = (await self.boxes(team)).get(gen)
            if box is None:  # fetched before another member's rotation or share (a long-running sync): once more
                self._box_cache.pop(team.team_id, None)
                box = (await self.boxes(team)).get(gen)
            if box is None:
                raise NotFound(f"the server has no key box for you in team {team.name} generation {gen}")
            puk = await self.puk(commitment.puk_gen)
            key = open_team_box(box, puk, team.team_id, me, commitment, team.canaries[gen])
        else:
            newer = [g for (g, m) in team.boxes if m == me and g > gen]
            if not newer or gen < 1 or any(g not in team.prev for g in range(gen + 1, min(newer) + 1)):
                raise PolicyDenied(f"you hold no key for team {team.name} generation {gen}")
            key = await self.team_key(team, gen + 1)
            key = open_history(key, team.prev[gen + 1], team.canaries[gen])
        self._key_cache[cache_key] = key
        return key

    async def keys_for(self, team: TeamState) -> list[TeamKey]:
        """Every generation we can open, newest first (history reaches back where allowed)."""
        keys = []
        for gen in range(team.generation, 0, -1):
            try:
                keys.append(await self.team_key(team, gen))
            except PolicyDenied:
                continue
        if not keys:
            raise PolicyDenied(f"you hold no key for team {team.name}")
        return keys

    def new_generation(self, team: TeamState, view: View, old: TeamKey | None,
                       leaving: str | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
        """A fresh key generation boxed to the team's current members (minus ``leaving``).

        Without ``old`` (a re-key of a team none of whose members holds the key) it has a new name
        key and no history, and we (an admin waiting for a share) get a box too, as the chain says."""
        me = self.session.me
        key = TeamKey.generate(team.team_id, team.generation + 1)
        if old is not None:
            key = TeamKey(key.team_id, key.gen, key.seed, old.name_key)
        boxes: dict[str, bytes] = {}
        commits = []
        recipients = POLICY.key_recipients(team, view.org, view.org.seq,
                                             team_link_time(self.session.now(), team, view.org), view.members)
        if old is None and team.generation:
            recipients |= {me}
        for mid in sorted(recipients - ({leaving} if leaving else set())):
            ms = view.members[mid]
            boxes[mid] = key.seal_for(mid, ms.puk_gen, ms.puk_box_public)
            commits.append({"member": mid, "puk_gen": ms.puk_gen, "hash": box_hash(boxes[mid])})
        body: dict[str, Any] = {"gen": key.gen, "canary": key.canary, "boxes": commits}
        owed = POLICY.team_members(team, view.org, view.org.seq, team_link_time(self.session.now(), team, view.org))
        withheld = sorted(owed - set(team.pending_share) - set(boxes) - ({leaving} if leaving else set()))
        if team.kind == "coalition" and withheld:  # named: a guest's view checks them (session 17, review 17)
            body["withheld"] = withheld
        if team.history and old is not None:
            body["prev"] = seal_history(key, old)
        return body, boxes
