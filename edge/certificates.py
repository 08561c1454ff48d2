"""Days until each configured certificate expires, for ``status`` and monitoring."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from edge.config import Settings


def configured_certificates(settings: Settings) -> dict[str, Path]:
    """Config key path -> certificate file, for every TLS table in use."""
    found: dict[str, Path] = {}
    for index, listener in enumerate(settings.mllp):
        if listener.tls is not None:
            found[f"mllp[{index}].tls.cert"] = listener.tls.cert
    for section in ("fhir", "peer"):
        table = getattr(settings, section, None)
        tls = getattr(table, "tls", None) if table is not None else None
        if tls is not None:
            found[f"{section}.tls.cert"] = tls.cert
    return found


def days_left(settings: Settings, now: datetime | None = None) -> dict[str, int | None]:
    """Whole days until each certificate's notAfter (negative: expired; None: unreadable)."""
    now = now or datetime.now(UTC)
    result: dict[str, int | None] = {}
    for key, path in configured_certificates(settings).items():
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            result[key] = None
            continue
        result[key] = (cert.not_valid_after_utc - now).days
    return result
