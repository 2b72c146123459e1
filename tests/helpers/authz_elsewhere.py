"""The policy actions the authorization matrix (tests/test_authz_matrix.py) cannot attempt per cell, with where
they are judged instead, and the team-role caps tested elsewhere."""

from __future__ import annotations

from vault.chains import CLOSING_TYPES

# Policy actions the matrix cannot attempt per cell, with where they are judged instead.
ELSEWHERE = {"restore.accept": "needs a server restored from an older backup per cell: judged by "
                               "tests/test_restored.py, tests/test_restored_attacks.py, tests/test_review7_exploits.py "
                               "and the authority model",
             # A cut pauses its member and makes every team they are in rotate: per cell it would reshape the
             # shared world every other cell runs in. Who may sign them (Security Team; NCC only while nobody holds
             # the role; never the paused member's own clear), by every replay and by the real server (forged
             # links answered 403): tests/test_incident_lost_chains.py, tests/test_incident_lost.py and the
             # authority model.
             **dict.fromkeys(("org.device.cut", "org.clear"), "judged by tests/test_incident_lost*.py and the "
                             "authority model (see above)"),
             "org.suspect": "a pause like a cut's: tests/test_incident_suspect.py and the authority model",
             # A roster export is an attestation, not a chain link: who may (NCC, Security Team) and the reader
             # limit are judged per role through the CLI and the server.
             "org.roster": "tests/test_roster_export.py, tests/test_rules_rosters.py and the authority model",
             **dict.fromkeys(("export.request", "export.approve"), "no request to approve per cell (two Security "
                             "Team members): tests/test_export_approvals*.py and the authority model"),
             **dict.fromkeys(("org.coalition", "coalition.ally", "coalition.remove"),
                             "tests/test_coalition_{chains,model,cli}.py (no CLI cells: they need a second org)"),
             "org.coalition.share": "tests/test_coalition_share.py (who may, by every replay) and "
                                    "tests/test_coalition_ncc_key.py (two real servers)",
             "coalition.rekey": "tests/test_coalition_rekey_host.py and the coalition model (no client makes one yet)",
             "coalition.server": "tests/test_coalition_guest_move.py (real servers) and the coalition model",
             "coalition.act": "a record of an act on another organization's server: tests/test_coalition_acts.py "
                              "(two real servers) and the authority model",
             # A closing ends the shared world: who may sign each act, and the quorum, are judged elsewhere.
             **dict.fromkeys(CLOSING_TYPES, "ends the organization: tests/test_closing*.py and the authority model")}
CAPS_ELSEWHERE = {"guest": "tests/test_coalition_chains.py::test_a_guest_is_never_an_admin_and_never_adds"}
