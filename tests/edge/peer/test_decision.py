"""The consent decision: bases, per-resource rules, sensitive labels (with a property)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edge.peer.codes import SENSITIVE_LABELS
from edge.peer.decision import Provision, Requester, decide

NOW = datetime(2026, 3, 1, tzinfo=UTC)
TREAT = Requester("there", "dr-x", "physician", "TREAT")


def obs(*labels: str, category: str = "laboratory") -> dict[str, Any]:
    return {"resourceType": "Observation", "category": [{"coding": [{"code": category}]}],
            "meta": {"security": [{"code": label} for label in labels]}}


def permit(**kw: Any) -> Provision:
    return Provision(consent_id=kw.pop("cid", "c1"), permit=True, **kw)


def test_defaults() -> None:
    for policy, purpose, expected in (("deny", "TREAT", False),
                                      ("permit-treatment", "TREAT", True),
                                      ("permit-treatment", "HPAYMT", False),
                                      ("break-glass-only", "TREAT", False)):
        requester = Requester("there", "dr-x", "physician", purpose)
        decision = decide([], requester, policy=policy,  # type: ignore[arg-type]
                          break_glass_roles=(), now=NOW)
        assert decision.permitted is expected, (policy, purpose)


def test_consent_actor_purpose_period() -> None:
    rules = [permit(facilities=frozenset({"other"})),
             permit(practitioners=frozenset({"there/dr-y"})),
             permit(purposes=frozenset({"HRESCH"})),
             permit(end=date(2026, 2, 28)), permit(start=date(2026, 3, 2))]
    assert not decide(rules, TREAT, policy="deny", break_glass_roles=(), now=NOW).permitted
    ok = [permit(practitioners=frozenset({"there/dr-x"}), purposes=frozenset({"TREAT"}),
                 start=date(2026, 3, 1), end=date(2026, 3, 1))]
    assert decide(ok, TREAT, policy="deny", break_glass_roles=(), now=NOW).basis == "consent"


def test_deny_wins_over_permit_but_not_over_break_glass() -> None:
    rules = [permit(), Provision("c2", permit=False)]
    assert decide(rules, TREAT, policy="permit-treatment", break_glass_roles=(),
                  now=NOW).reason == "consent-denies"
    btg = Requester("there", "dr-x", "er", "BTG", "unconscious")
    decision = decide(rules, btg, policy="deny", break_glass_roles=("er",), now=NOW)
    assert decision.permitted and decision.break_glass and decision.allows(obs())


def test_type_category_and_partial_deny() -> None:
    rules = [permit(classes=frozenset({"Observation"}), codes=frozenset({"laboratory"})),
             Provision("c2", permit=False, codes=frozenset({"social-history"}))]
    decision = decide(rules, TREAT, policy="deny", break_glass_roles=(), now=NOW)
    assert decision.allows(obs())
    assert not decision.allows(obs(category="vital-signs"))
    assert not decision.allows({"resourceType": "Condition"})
    assert decision.allows({"resourceType": "Patient"})
    assert decision.consent_ids == ("c1", "c2")


@given(labels=st.sets(st.sampled_from(sorted(SENSITIVE_LABELS)), min_size=1),
       permitted=st.sets(st.sampled_from(sorted(SENSITIVE_LABELS))),
       purpose=st.sampled_from(["TREAT", "BTG", "ETREAT"]))
def test_sensitive_data_needs_an_explicit_permit(labels: set[str], permitted: set[str],
                                                  purpose: str) -> None:
    requester = Requester("there", "dr-x", "er", purpose, "reason")
    rules = [permit(labels=frozenset(permitted))]
    decision = decide(rules, requester, policy="permit-treatment",
                      break_glass_roles=("er",), now=NOW)
    assert decision.allows(obs(*labels)) is (labels <= permitted)
    # Without any consent no basis releases it, break-glass included.
    bare = decide([], requester, policy="permit-treatment", break_glass_roles=("er",),
                  now=NOW)
    assert not bare.allows(obs(*labels))
