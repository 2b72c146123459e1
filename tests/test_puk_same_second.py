"""Two member-key rolls in one second (two device revocations run back to back): every generation current in
that second is accepted for a link dated in it. Before the fix, the middle generation was not, and the team
rotation made after the first revocation (boxed to it) failed replay for every reader ("key box ... is not
sealed to the member's current key"), found when `device revoke` ran twice within a second."""

from __future__ import annotations

from types import SimpleNamespace

from vault.chains import MemberState
from vault.chains.member import PukGeneration


def gens_at(since: tuple[int, ...], t: int) -> set[int]:
    state = SimpleNamespace(puks={g: PukGeneration(g, b"s", b"b", s, {}, None) for g, s in enumerate(since, 1)})
    state.puk_gen_at = lambda when: MemberState.puk_gen_at(state, when)  # type: ignore[arg-type]
    return MemberState.puk_gens_at(state, t)  # type: ignore[arg-type]


def test_two_rolls_in_one_second_accept_each_generation_of_that_second() -> None:
    assert gens_at((100, 200, 200), 200) == {1, 2, 3}
    assert gens_at((100, 200, 200), 201) == {3}
    assert gens_at((100, 200, 200), 199) == {1}


def test_one_roll_in_a_second_accepts_the_one_before_and_the_new_one() -> None:
    assert gens_at((100, 200), 200) == {1, 2}
    assert gens_at((100, 200, 300), 300) == {2, 3}
