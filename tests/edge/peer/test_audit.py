"""AuditEvents are prepared without the walk that checks a resource's JSON layout
(``prepare_audit`` passes ``layout_known``): that is only right while every event
:func:`build_audit_event` can make holds nothing but ASCII keys, strings and booleans. Checked
here for every pattern, with any text a peer or an operator can put in an event, against the
walk and against rfc8785 itself (the bytes the leaf hash and every verifier use)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.peer.audit import Actor, AuditRecord, Pattern, build_audit_event, prepare_audit
from ledger_client.leaf import _json_layout, _Layout

_text = st.text(max_size=12)
_actors = st.builds(Actor, kind=st.sampled_from(["peer", "local"]), facility=_text,
                    user=_text, role=_text, purpose=_text, reason=_text,
                    address=st.none() | _text)
_records = st.builds(
    AuditRecord, pattern=st.sampled_from(get_args(Pattern)),
    outcome=st.sampled_from(["0", "4", "8"]), actor=_actors,
    recorded=st.datetimes(timezones=st.just(UTC)), patient_id=st.none() | _text,
    query=st.none() | _text, data_classes=st.lists(_text, max_size=3).map(tuple),
    released=st.integers(0, 10**9), decision=st.none() | _text, basis=st.none() | _text,
    consent_ids=st.lists(_text, max_size=3).map(tuple), break_glass=st.booleans())


@settings(max_examples=300)
@given(_records, _text)
def test_every_audit_event_has_the_layout_prepare_audit_assumes(record: AuditRecord,
                                                               facility: str) -> None:
    event = build_audit_event(record, facility=facility)
    assert _json_layout(event) is _Layout.AS_IS
    (prepared,) = prepare_audit([event])
    stamp = "2026-11-22T01:02:03.456Z"
    stored = {**event, "meta": {**event["meta"], "versionId": "3", "lastUpdated": stamp}}
    assert prepared.canonical(3, stamp) == rfc8785.dumps(stored)


def test_a_float_in_an_event_would_fail_the_check_above() -> None:
    # What the test guards against: a builder change that puts a number in (released as a
    # count, a duration) no longer has the layout prepare_audit assumes.
    record = AuditRecord("disclosure", "0", Actor("peer", "f", "u"), datetime.now(UTC))
    event = build_audit_event(record, facility="here")
    assert _json_layout({**event, "duration": 1e-7}) is _Layout.RFC8785
