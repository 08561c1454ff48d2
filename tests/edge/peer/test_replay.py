"""Replay protection that survives a restart: the JWT id is committed with the request's
AuditEvents, and a second use is refused even by a process that never saw the first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge.peer.audit import Actor, audit_trail, summarize
from edge.peer.consent import ConsentSpec, build_consent, store_consent
from tests.edge.peer.support import REF, make_env, new_service, observation, patient


async def test_a_token_used_before_a_restart_is_refused_after_it(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    try:
        env.put([patient(), observation(1)])
        conn = env.connect()
        try:
            store_consent(conn, env.store, build_consent(
                ConsentSpec(facilities=("there",)), patient_id="pat-1", now=datetime.now(UTC)),
                patient=REF, actor=Actor("local", "here", "local/op"), facility="here",
                now=datetime.now(UTC))
        finally:
            conn.close()
        token = env.token()
        assert (await env.get("/Patient/pat-1/$everything", token=token)).status == 200
        # A new service on the same database: its in-memory replay cache is empty.
        old = env.service
        env.service = new_service(env.db, env.committer, env.store.keys, old.settings)
        old.close()
        answer = await env.get("/Patient/pat-1/$everything", token=token)
        assert answer.status == 401
        assert answer.json()["issue"][0]["diagnostics"] == "request context: replayed (jti)"
        assert (await env.get("/Patient/pat-1/$everything")).status == 200  # a fresh one
        conn = env.connect()
        try:
            events = [summarize(e) for e in audit_trail(conn, env.store, REF)]
        finally:
            conn.close()
        assert [e["event"] for e in events].count("disclosure") == 2
    finally:
        env.close()
