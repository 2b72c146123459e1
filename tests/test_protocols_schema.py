"""The security-protocols schema: what a protocols text may change, and the exact refusal of each mistake.

``security/protocols.py`` checks ``[rules]``, each ``rules.<id>`` table and ``[quotas]`` with one helper;
these tests pin every message it gives (the CLI and the API show them to the NCC member who proposed the
text) and what a valid text merges over the shipped defaults.
"""

from __future__ import annotations

import pytest

from security.protocols import MAX_QUOTA, SEVERITIES, defaults, parse
from vault.errors import EncodingError

WHAT = "p{1}.toml"  # braces in the name given for the text must not be taken as a format string
RULES = sorted(defaults().rules)
QUOTAS = sorted(defaults().quotas)


@pytest.mark.parametrize(("text", "message"), [
    ("rules = 4\n", f"{WHAT}: [rules] must be a table"),
    ("[rules.nope]\n", f"{WHAT}: unknown rules ['nope'] (known: {RULES})"),
    ("[rules.zz]\n[rules.aa]\n", f"{WHAT}: unknown rules ['aa', 'zz'] (known: {RULES})"),
    ("[rules]\noffboarding = 3\n", f"{WHAT}: rules.offboarding must be a table"),
    ("[rules.offboarding]\nfoo = 1\nbar = 2\n", f"{WHAT}: rules.offboarding has unknown keys ['bar', 'foo']"),
    ("[rules.offboarding]\nhours = -1\n", f"{WHAT}: rules.offboarding.hours must not be negative"),
    ("[rules.offboarding]\nhours = \"24\"\n", f"{WHAT}: rules.offboarding.hours must be like 24"),
    ("[rules.offboarding]\nhours = true\n", f"{WHAT}: rules.offboarding.hours must be like 24"),
    ("[rules.offboarding]\nenabled = 1\n", f"{WHAT}: rules.offboarding.enabled must be like True"),
    ("[rules.offboarding]\nseverity = \"huge\"\n",
     f"{WHAT}: rules.offboarding.severity must be one of {SEVERITIES}"),
    ("quotas = 4\n", f"{WHAT}: [quotas] must be a table"),
    ("[quotas]\nzz = 1\nlink_slot = 1\n", f"{WHAT}: [quotas] has unknown keys ['link_slot', 'zz'] (known: {QUOTAS})"),
    ("[quotas]\nlink_slots = 0\n", f"{WHAT}: quotas.link_slots must be an integer from 1 to {MAX_QUOTA}"),
    ("[quotas]\nlink_slots = false\n", f"{WHAT}: quotas.link_slots must be an integer from 1 to {MAX_QUOTA}"),
    # [rules] is checked before [retention], [retention] before [quotas]
    ("rules = 4\nquotas = 4\n", f"{WHAT}: [rules] must be a table"),
    ("quotas = 4\n[retention]\ndays = 0\n", f"{WHAT}: retention.days must be an integer from 1 to 3650"),
])
def test_each_mistake_is_refused_with_its_message(text: str, message: str) -> None:
    with pytest.raises(EncodingError) as e:
        parse("version = 2\n" + text, WHAT)
    assert str(e.value) == message


def test_given_values_replace_the_defaults_and_nothing_else() -> None:
    shipped = defaults()
    p = parse("version = 3\n[rules.offboarding]\nenabled = false\nhours = 0\nseverity = \"low\"\n"
              "[quotas]\nlink_slots = 1\n")
    off = p.rule("offboarding")
    assert (off.enabled, off.severity, off.params) == (False, "low", {"hours": 0})
    assert {k: r for k, r in p.rules.items() if k != "offboarding"} == {
        k: r for k, r in shipped.rules.items() if k != "offboarding"}
    assert list(p.rules) == list(shipped.rules)  # in the shipped order
    assert p.quotas == {**shipped.quotas, "link_slots": 1}
    assert shipped.rule("offboarding").enabled and defaults().quotas == shipped.quotas  # the defaults are untouched
