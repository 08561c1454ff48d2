"""The request-context JWT: what verifies, and each way it is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.peer.context import CLOCK_SKEW_S, ReplayCache, issue_context, verify_context
from edge.peer.errors import ContextError

KEY = Ed25519PrivateKey.generate()
NOW = 1_800_000_000.0
THUMB = "q" * 43


def token(**overrides: Any) -> str:
    args: dict[str, Any] = {"issuer": "there", "audience": "here", "practitioner": "dr-x",
                            "role": "physician", "purpose": "TREAT", "cert_thumbprint": THUMB,
                            "now": NOW, "lifetime_s": 60, **overrides}
    return issue_context(KEY, **args)


def verify(tok: str, *, replay: ReplayCache | None = None, now: float = NOW,
           key: Ed25519PrivateKey = KEY, **overrides: Any) -> Any:
    args: dict[str, Any] = {"public_key": key.public_key(), "issuer": "there",
                            "audience": "here", "cert_thumbprint": THUMB, "max_age_s": 300,
                            "replay": replay or ReplayCache(lambda: now), "now": now,
                            **overrides}
    return verify_context(tok, **args)


def forge(header: dict[str, Any], claims: dict[str, Any], sig: bytes = b"") -> str:
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{enc(json.dumps(header).encode())}.{enc(json.dumps(claims).encode())}.{enc(sig)}"


def test_a_good_token_verifies_once() -> None:
    replay = ReplayCache(lambda: NOW)
    tok = token(reason="unconscious", purpose="BTG")
    context = verify(tok, replay=replay)
    assert (context.facility, context.practitioner, context.purpose, context.reason) == (
        "there", "dr-x", "BTG", "unconscious")
    assert "unconscious" not in repr(context)
    with pytest.raises(ContextError, match="replayed"):
        verify(tok, replay=replay)


@pytest.mark.parametrize(("tok", "checks", "problem"), [
    (token(), {"key": Ed25519PrivateKey.generate()}, "signature"),
    (token(issuer="other"), {}, "iss"),
    (token(audience="elsewhere"), {}, "aud"),
    (token(cert_thumbprint="z" * 43), {}, "bound"),
    (token(), {"now": NOW + 200}, "expired"),
    (token(now=NOW + 3600), {}, "future"),
    (token(lifetime_s=3600), {}, "lifetime"),
    ("a.b", {}, "compact"),
    ("!!.!!.!!", {}, "base64url|JSON"),
])
def test_refusals(tok: str, checks: dict[str, Any], problem: str) -> None:
    with pytest.raises(ContextError, match=problem):
        verify(tok, **checks)


def test_alg_none_and_other_algorithms_are_refused() -> None:
    good = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(good[1] + "=="))
    for header in ({"alg": "none"}, {"alg": "HS256"}, {"alg": "EdDSA", "crit": ["x"]}):
        with pytest.raises(ContextError, match="alg"):
            verify(forge(header, claims))


def test_claims_changed_after_signing_are_refused() -> None:
    head, _, sig = token().split(".")
    claims = {"iss": "there", "aud": "here", "sub": "dr-evil", "role": "physician",
              "purpose_of_use": "TREAT", "iat": int(NOW), "exp": int(NOW) + 60, "jti": "j" * 16,
              "cnf": {"x5t#S256": THUMB}}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(ContextError, match="signature"):
        verify(f"{head}.{body}.{sig}")


def test_unknown_purpose_cannot_be_issued() -> None:
    with pytest.raises(ContextError, match="purpose"):
        token(purpose="SHOPPING")


def test_a_refused_token_does_not_burn_its_jti() -> None:
    replay = ReplayCache(lambda: NOW)
    tok = token(jti="j" * 16)
    with pytest.raises(ContextError):
        verify(tok, replay=replay, audience="elsewhere")
    assert verify(tok, replay=replay).jti == "j" * 16


def test_the_replay_cache_keeps_ids_until_they_expire_and_no_longer() -> None:
    clock = [NOW]
    replay = ReplayCache(lambda: clock[0])
    for n in range(20_000):  # more than any old rebuild threshold: all still live
        assert replay.add(f"jti-{n}", int(NOW) + 60 + n % 2)
    assert replay.live == 20_000
    assert not replay.add("jti-0", int(NOW) + 60)  # a replay, however many are live
    replay.forget("jti-1")
    assert replay.add("jti-1", int(NOW) + 600)  # forgotten (refused request), then used
    clock[0] = NOW + 60 + CLOCK_SKEW_S + 0.5  # the +60 ids are past expiry and skew
    assert replay.add("late", int(clock[0]) + 60)
    assert replay.live == 10_000 + 1  # the +61 ids (jti-1 with its newer expiry) and "late"
    assert not replay.add("jti-1", int(NOW) + 600)
    assert not replay.add("jti-3", int(NOW) + 61)
