"""Two organizations by hand (no server): a host with a coalition space and allies, each an ``MWorld`` of its own.

The ally's members are people of the ally's world; their member chains are copied into the host's world (what the
host's server stores for a guest) so the host's chains replay with them. The ally's coalition key signs its
``coalition.admit`` and ``coalition.remove`` statements (``vault.chains.coalition``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from security.authority import POLICY
from security.policy import TEAM_KINDS
from tests.helpers.chain_world import MWorld, Person, Team
from vault.chains import TeamState, replay_team
from vault.chains.coalition import (
    CoalitionKey,
    admit_statement,
    rekey_statement,
    remove_statement,
    signed_statement,
)
from vault.chains.outside import outside_org
from vault.encoding import Value
from vault.links import Link, make_link
from vault.teamkeys import TeamKey, seal_history


@dataclass
class Ally:
    world: MWorld
    key: CoalitionKey
    name: str
    members: list[Person] = field(default_factory=list)

    @property
    def root(self) -> bytes:
        return self.world.org_links[0].hash

    def member(self, name: str, host: MWorld) -> Person:
        """A member admitted to the ally's organization, whose member chain the host's server also holds."""
        person = self.world.admit(name)
        host.people[person.id] = person
        host.devices[person.id] = dict(self.world.devices[person.id])
        self.members.append(person)
        return person


class Coalition:
    """The host (founder: NCC and the space's admin; ``writer``: a host member of the space) and allies."""

    def __init__(self, space_name: str = "campaign", *, hosted: bool = False) -> None:
        """``hosted``: the host's NCC records its own coalition key (``org.coalition``, host = its own root) and the
        space's ``team.create`` carries it (``host_key``): its members' entry needs the host's approval."""
        self.host = MWorld()
        self.admin = self.host.founder
        self.writer = self.host.admit("host-writer")
        self.host_key = CoalitionKey.generate() if hosted else None
        body, self.space = self.host.team_create_body([(self.admin, "admin"), (self.writer, "writer")],
                                                      kind="coalition")
        if self.host_key is not None:
            self.host.org_link(self.admin, "org.coalition", {"name": body["name"], "key": self.host_key.public,
                                                             "host": self.host.org_links[0].hash})
            body["org_seq"], body["host_key"] = self.host.org_seq, self.host_key.public
        self.space.links.append(make_link(chain=None, seq=1, prev=None, time=self.host.tick(), signer=self.admin.id,
                                          device=self.admin.device, type_="team.create", body=body))
        self.host.teams.append(self.space)
        self.space_name = space_name
        self.pending: tuple[Link, Callable[[], None]] | None = None  # the last link made, not yet in the chain
        self.every_box: list[tuple[int, bytes]] = [(1, box) for box in self.space.boxes.values()]  # what a server saw

    def ally(self, name: str = "ally-org", *, record: bool = True) -> Ally:
        """An allied organization; ``record``: its NCC records its coalition key in its own chain."""
        ally = Ally(MWorld(), CoalitionKey.generate(), name)
        if record:
            ally.world.org_link(ally.world.founder, "org.coalition",
                                {"name": self.space_name, "key": ally.key.public, "host": self.host.org_links[0].hash})
        return ally

    def ally_with_two_guests(self) -> tuple[Ally, Person, Person]:
        """A pinned ally and two of its members in the space as guests (alice, bob)."""
        ally = self.ally()
        self.pin(ally)
        alice, bob = ally.member("alice", self.host), ally.member("bob", self.host)
        self.add(alice, self.approval(ally, alice))
        self.add(bob, self.approval(ally, bob))
        return ally, alice, bob

    def two_allies(self) -> tuple[Ally, Ally, Person, Person]:
        """Two pinned allies ("ally", "other") and a guest of each in the space (alice, olga)."""
        ally, other = self.ally("ally"), self.ally("other")
        self.pin(ally)
        self.pin(other)
        alice, olga = ally.member("alice", self.host), other.member("olga", self.host)
        self.add(alice, self.approval(ally, alice))
        self.add(olga, self.approval(other, olga))
        return ally, other, alice, olga

    def pin(self, ally: Ally, *, signer: Person | None = None, key: bytes | None = None, team: Team | None = None,
            append: bool = True) -> Link:
        link = self.host.team_link(team or self.space, signer or self.admin, "coalition.ally",
                                   {"ally": ally.root, "key": key or ally.key.public, "name": ally.name},
                                   append=append and team is not None)
        return link if team is not None else self._made(link, lambda: None, append)

    def approval(self, ally: Ally, person: Person, role: str = "writer", *, until: int | None = None,
                 key: CoalitionKey | None = None, space: str | None = None, root: bytes | None = None,
                 time: int | None = None) -> dict[str, Value]:
        statement = admit_statement(space or self.space.team_id, root or ally.root, person.id, role, until,
                                    self.host.time if time is None else time)
        return signed_statement(key or ally.key, statement)

    def host_approval(self, person: Person, role: str = "writer", *, until: int | None = None,
                      key: CoalitionKey | None = None, time: int | None = None) -> dict[str, Value]:
        """The host's own ``coalition.admit`` (ally = the host's root), signed with its coalition key."""
        key = key or self.host_key
        assert key is not None
        statement = admit_statement(self.space.team_id, self.host.org_links[0].hash, person.id, role, until,
                                    self.host.time if time is None else time)
        return signed_statement(key, statement)

    def host_removal(self, person: Person, *, key: CoalitionKey | None = None) -> dict[str, Value]:
        key = key or self.host_key
        assert key is not None
        return signed_statement(key, remove_statement(self.space.team_id, self.host.org_links[0].hash, person.id,
                                                      self.host.time))

    def add(self, person: Person, approval: dict[str, Value] | None, role: str = "writer", *,
            signer: Person | None = None, until: int | None = None, append: bool = True) -> Link:
        commit, box = self.host.box_commit(self.space.key, person)
        body: dict[str, Any] = {"member": person.id, "role": role, "until": until,
                                "key": {"gen": self.space.key.gen, "boxes": [commit]}}
        if approval is not None:
            body["approval"] = approval
        link = self.host.team_link(self.space, signer or self.admin, "team.add", body, append=False)

        def record() -> None:
            self.space.boxes[person.id] = box
            self.every_box.append((self.space.key.gen, box))
        return self._made(link, record, append)

    def _made(self, link: Link, record: Callable[[], None], append: bool) -> Link:
        """``append``: the link goes into the chain with its keys and boxes; else ``accept`` does that later."""
        self.pending = (link, record)
        if append:
            self.accept(link)
        return link

    def accept(self, link: Link) -> None:
        """Append ``link``, made with ``append=False`` just before, and keep its keys and boxes."""
        assert self.pending is not None and self.pending[0] is link
        record = self.pending[1]
        self.space.links.append(link)
        record()

    def removal(self, ally: Ally, person: Person, *, key: CoalitionKey | None = None) -> dict[str, Value]:
        return signed_statement(key or ally.key, remove_statement(self.space.team_id, ally.root, person.id,
                                                                  self.host.time))

    def remove(self, person: Person, rest: list[Person], *, signer: Person | None = None,
               statement: dict[str, Value] | None = None, append: bool = True) -> Link:
        """``coalition.remove`` with a rotation boxed to ``rest`` (the signer must hold the key)."""
        key = TeamKey.generate(self.space.team_id, self.space.key.gen + 1)
        sealed = {m.id: self.host.box_commit(key, m) for m in rest}
        body = {"gen": key.gen, "canary": key.canary, "boxes": [commit for commit, _ in sealed.values()],
                "prev": seal_history(key, self.space.key)}
        link = self.host.team_link(self.space, signer or self.admin, "coalition.remove",
                                   {"member": person.id, "statement": statement, "key": body}, append=False)

        def record() -> None:
            self.space.key = key
            self.space.boxes = {mid: box for mid, (_, box) in sealed.items()}
            self.every_box.extend((key.gen, box) for _, box in sealed.values())
        return self._made(link, record, append)

    def state(self, extra: list[Link] | None = None) -> TeamState:
        return self.host.replay_team(self.space.links + (extra or []))

    def outside(self, links: list[Link]) -> TeamState:
        """A guest's client's replay: a join code vouching for the chain up to its last ``coalition.ally`` (with the
        pins in force there, as the host's replay of that prefix states them: ``join_code``), or its first link, so
        every later link is judged past the code (``vault/chains/outside.py``)."""
        pins = [x.seq for x in links if x.type == "coalition.ally"]
        seq = pins[-1] if pins else 1
        vouched = self.host.replay_team(links[:seq])
        org = outside_org(self.host.org_links[0].hash, self.space.team_id, seq, vouched.ally_pins.items())
        return replay_team(links, org, self.host.members(), POLICY, TEAM_KINDS)

    def both(self, link: Link) -> list[Callable[[], TeamState]]:
        """The host's replay and the guest's of the space's chain with ``link``."""
        return [lambda: self.state([link]), lambda: self.outside([*self.space.links, link])]

    def rekey_host_key(self, *, second: Person | None = None) -> CoalitionKey:
        """The host's NCC replaces its coalition key for the space in its own chain (``org.coalition`` with
        ``replaces`` and the rekey statement signed with the old key): what it does when a member leaves the NCC.
        ``second``: another NCC member signs the same act after the founder (rule two-person)."""
        assert self.host_key is not None
        root, new = self.host.org_links[0].hash, CoalitionKey.generate()
        [name] = [n for n, e in self.host.org().coalitions.items() if e.key == self.host_key.public]
        for signer in [self.admin, *([second] if second is not None else [])]:
            statement = rekey_statement(root, new.public, self.host.time)
            self.host.org_link(signer, "org.coalition", {"name": name, "key": new.public, "host": root,
                                                         "replaces": self.host_key.public,
                                                         "rekey": signed_statement(self.host_key, statement)})
        assert self.host.org().coalitions[name].key == new.public
        assert self.host.org().coalitions_retired[name][-1].entry.key == self.host_key.public
        return new
