"""Issue 20, session 19: what the stale coalition key hook after every command of the organization
(client/cli/_common.py ``stale_keys_after`` -> client/coalitionrekey.py ``when_stale``) asks the server. It decides
from a view the command verified (``coalitionrekey.idle``): a member without NCC, or with NCC and no coalition key
to replace, makes no request for it, even after a command whose own chain link left it no current view (``team
remove``, ``invite``), which before fetched every chain once more (directory, each member's, the organization's, each
team's). That the hook still acts for an NCC member holding a stale key, after a command ending on its own link too:
tests/test_coalition_ncc_term_rekey.py (hank's `invite` records dora's proposal). Requests are counted by the real
server's own counter (``/api/metrics``, ``mvault_http_requests_total`` by route)."""

from __future__ import annotations

from tests.conftest import Member, Org, ServerThread
from tests.test_server_metrics import _families, _scrape, _value

CHAIN_ROUTES = ("/api/v1/directory", "/api/v1/chains/org", "/api/v1/chains/member/{member}",
                "/api/v1/chains/team/{team}")


async def _chain_reads(server: ServerThread) -> dict[str, float]:
    status, body = await _scrape(server)
    assert status == 200 and isinstance(body, str), body
    families = _families(body)
    return {route: _value(families, "mvault_http_requests_total", route=route, method="GET") for route in CHAIN_ROUTES}


async def _reads_of(server: ServerThread, m: Member, *args: str) -> dict[str, float]:
    """The chain reads the server answered over ``m``'s command ``args`` (which must succeed)."""
    before = await _chain_reads(server)
    r = m.ok(*args)
    assert "coalition key" not in r.err, r.err
    after = await _chain_reads(server)
    return {route: after[route] - before[route] for route in CHAIN_ROUTES}


async def test_the_hook_reads_no_chain_after_a_command_that_appended_a_link(org: Org) -> None:
    """bob (no NCC, no coalition key) removes alice from a team he administers, alice (NCC, no coalition key recorded)
    makes an invitation: each command ends on its own chain link, and the chains are read once (the command's own
    check before it runs), not twice (the code before: the hook read them all again)."""
    alice, bob, server = org.alice, org.bob, org.server
    alice.ok("team", "create", "side", "--kind", "program")
    alice.ok("team", "add", "side", "bob", "--role", "admin")
    teams = 2  # drafting and side: one read of each team chain per view
    for m, args in ((bob, ("team", "remove", "side", "alice")), (alice, ("invite",))):
        assert await _reads_of(server, m, *args) == {
            "/api/v1/directory": 1, "/api/v1/chains/org": 1, "/api/v1/chains/member/{member}": 2,
            "/api/v1/chains/team/{team}": teams}, args
    # a command that fetched its chains after its link (team create) read them twice before the hook, as before
    assert (await _reads_of(server, alice, "team", "create", "third", "--kind", "program"))["/api/v1/directory"] == 2
