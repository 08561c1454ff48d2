"""The request context: who asks, in which role, for what purpose (issue 8).

Carried as a JWT (RFC 7519) in ``Authorization: Bearer``, signed with the requesting
facility's Ed25519 key (``alg`` EdDSA, RFC 8037 3.1; the key the directory publishes for it)
and bound to its TLS client certificate by the ``cnf`` claim ``x5t#S256`` (RFC 8705 3.1): a
token lifted from one connection is useless on another facility's. Claims:

=================  ==============================================================
``iss``            requesting facility id (must be the certificate's facility)
``aud``            the answering facility id
``sub``            practitioner id at the requesting facility
``role``           the practitioner's role (a code; break-glass roles are configured)
``purpose_of_use`` one v3 ActReason code: TREAT ETREAT BTG HPAYMT HOPERAT HRESCH PATRQT PUBHLTH
``reason``         free text; required for BTG and ETREAT (break-glass)
``iat`` ``exp``    issued/expiry, seconds; ``exp - iat`` at most ``[peer].jwt_max_age_s``
``jti``            unique id; each is accepted once (replay protection)
``cnf``            ``{"x5t#S256": <base64url SHA-256 of the client certificate DER>}``
=================  ==============================================================

The reason text may hold PHI: it goes only into the encrypted AuditEvent, never to logs.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edge.peer.codes import PURPOSES
from edge.peer.errors import ContextError

CLOCK_SKEW_S = 30  # accepted difference between the two facilities' clocks
_MAX_TOKEN = 8192


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ContextError("request context: not base64url") from None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """A verified request context. ``repr`` leaves out the reason (free text)."""

    facility: str
    practitioner: str
    role: str
    purpose: str
    reason: str
    jti: str
    expires: int  # seconds since the epoch

    def __repr__(self) -> str:
        return (f"RequestContext(facility={self.facility!r}, role={self.role!r}, "
                f"purpose={self.purpose!r})")


def issue_context(key: Ed25519PrivateKey, *, issuer: str, audience: str, practitioner: str,
                  role: str, purpose: str, cert_thumbprint: str, reason: str = "",
                  lifetime_s: int = 60, now: float | None = None,
                  jti: str | None = None) -> str:
    """A signed request-context JWT (what ``peer query`` sends on every request)."""
    if purpose not in PURPOSES:
        raise ContextError(f"request context: purpose_of_use must be one of {sorted(PURPOSES)}")
    issued = int(time.time() if now is None else now)
    claims = {"iss": issuer, "aud": audience, "sub": practitioner, "role": role,
              "purpose_of_use": purpose, "iat": issued, "exp": issued + lifetime_s,
              "jti": jti or secrets.token_urlsafe(16), "cnf": {"x5t#S256": cert_thumbprint}}
    if reason:
        claims["reason"] = reason
    header = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}"
    return f"{signing_input}.{_b64url(key.sign(signing_input.encode('ascii')))}"


class ReplayCache:
    """JWT ids seen in this process until they expire (the durable copy is the ``peer_jti``
    table, written with the request's AuditEvent). Thread-safe.

    Expired ids leave in expiry order (a heap): each call costs O(log n) however many live
    ids there are. (It used to rebuild the whole dict on every call once 10,000 ids were
    live: at ~200 requests/s with 60-second tokens and 30 s of clock skew, ~18,000 ids are
    live, and every request paid ~1 ms.)"""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, int] = {}
        self._expiries: list[tuple[int, str]] = []  # heap of (expires, jti)
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def live(self) -> int:
        """How many ids are held (seen and not yet expired, or expired since the last add)."""
        return len(self._seen)

    def add(self, jti: str, expires: int) -> bool:
        """Record ``jti``; False when it was already seen (a replay)."""
        now = self._clock()
        with self._lock:
            heap = self._expiries
            while heap and heap[0][0] + CLOCK_SKEW_S < now:
                old_expires, old = heapq.heappop(heap)
                if self._seen.get(old) == old_expires:  # not forgotten and added again since
                    del self._seen[old]
            if jti in self._seen:
                return False
            self._seen[jti] = expires
            heapq.heappush(heap, (expires, jti))
            return True

    def forget(self, jti: str) -> None:
        with self._lock:
            self._seen.pop(jti, None)


def _claim(claims: Mapping[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ContextError(f"request context: claim {name!r} missing or of the wrong type")
    return value


def verify_context(token: str, *, public_key: Ed25519PublicKey, issuer: str, audience: str,
                   cert_thumbprint: str, max_age_s: float, replay: ReplayCache,
                   now: float | None = None) -> RequestContext:
    """Check a request-context JWT; raise :class:`ContextError` naming the first problem.

    Order: shape, ``alg`` (only EdDSA: no ``none``, no algorithm confusion), signature with
    the certificate's facility's key, issuer and audience, certificate binding, times
    (``iat`` not in the future, ``exp`` not past, lifetime at most ``max_age_s``), purpose,
    break-glass reason, and last the ``jti`` (so a forged token cannot burn a real one's id).
    """
    if len(token) > _MAX_TOKEN:
        raise ContextError("request context: token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise ContextError("request context: not a JWS compact serialization")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
    except ValueError:
        raise ContextError("request context: header or claims are not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA" or "crit" in header:
        raise ContextError("request context: alg must be EdDSA")
    if not isinstance(claims, dict):
        raise ContextError("request context: claims are not an object")
    try:
        public_key.verify(_unb64url(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except (InvalidSignature, UnicodeEncodeError):
        raise ContextError("request context: signature does not verify") from None
    if _claim(claims, "iss", str) != issuer:
        raise ContextError("request context: iss is not the certificate's facility")
    if _claim(claims, "aud", str) != audience:
        raise ContextError("request context: aud is not this facility")
    cnf = _claim(claims, "cnf", dict)
    if cnf.get("x5t#S256") != cert_thumbprint:
        raise ContextError("request context: not bound to this client certificate")
    moment = time.time() if now is None else now
    iat, exp = _claim(claims, "iat", int), _claim(claims, "exp", int)
    if iat > moment + CLOCK_SKEW_S:
        raise ContextError("request context: issued in the future")
    if exp < moment - CLOCK_SKEW_S:
        raise ContextError("request context: expired")
    if exp - iat > max_age_s or exp < iat:
        raise ContextError("request context: lifetime longer than allowed")
    purpose = _claim(claims, "purpose_of_use", str)
    if purpose not in PURPOSES:
        raise ContextError("request context: unknown purpose_of_use")
    reason = claims.get("reason", "")
    if not isinstance(reason, str):
        raise ContextError("request context: reason must be a string")
    practitioner = _claim(claims, "sub", str)
    role = _claim(claims, "role", str)
    jti = _claim(claims, "jti", str)
    if not practitioner or not role or not 8 <= len(jti) <= 128:
        raise ContextError("request context: sub, role or jti empty or out of bounds")
    if not replay.add(jti, exp):
        raise ContextError("request context: replayed (jti already used)")
    return RequestContext(issuer, practitioner, role, purpose, reason, jti, exp)
