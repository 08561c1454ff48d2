"""The settings model. Every key of ``edge.toml`` is a field here, and nothing else is accepted.

Models are frozen (settings never change under a running component; a reload builds a new
object) and forbid unknown keys, so a typo is an error naming its path instead of a silently
ignored line (design.md, "examples to follow" 4).
"""

from __future__ import annotations

import codecs
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.functional_validators import AfterValidator, BeforeValidator


def _require_unique(what: str, names: list[str]) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique: {', '.join(duplicates)}")


def _facility_id(value: str) -> str:
    if not _FACILITY_ID.match(value):
        raise ValueError("must be 1-63 of a-z, 0-9, '.', '-' starting with a letter or digit")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Bind(BaseModel):
    """A listening address, written ``host:port`` (``[v6addr]:port`` for IPv6). Port 0 = any."""

    model_config = ConfigDict(frozen=True)
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Bind:
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
        else:
            host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        if ":" in host and not text.startswith("["):
            raise ValueError("write IPv6 addresses in brackets: [::1]:2575")
        if not port_text.isdigit():
            raise ValueError(f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is not in 0..65535")
        return cls(host=host, port=port)


def _to_bind(value: Any) -> Any:
    return Bind.parse(value) if isinstance(value, str) else value


BindField = Annotated[Bind, BeforeValidator(_to_bind)]
# A consortium-unique facility id (our own, and each peer's).
FacilityId = Annotated[str, AfterValidator(_facility_id)]
_FACILITY_ID = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_ABSOLUTE_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")


class FacilitySettings(_Strict):
    id: FacilityId
    timezone: str = "UTC"
    identifier_systems: dict[str, str] = Field(default_factory=dict)
    unmapped_authority: Literal["dead-letter", "facility-uri"] = "facility-uri"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value

    @field_validator("identifier_systems")
    @classmethod
    def _systems(cls, value: dict[str, str]) -> dict[str, str]:
        for authority, system in value.items():
            if not _ABSOLUTE_URI.match(system):
                raise ValueError(f"{authority}: {system!r} is not an absolute URI")
        return value


class StorageSettings(_Strict):
    dir: Path = Path("/var/lib/hie-edge")
    # Group commit: one fsync covers up to this many messages from every connection.
    group_commit_max: int = Field(default=256, ge=1, le=10_000)
    # Raw messages of processed records are dropped after this many days (0: kept forever;
    # the FHIR resources made from them are kept either way).
    raw_retention_days: int = Field(default=0, ge=0, le=36_500)


class KeySettings(_Strict):
    kek_file: Path = Path("/var/lib/hie-edge/keys/kek")
    signing_key_file: Path = Path("/var/lib/hie-edge/keys/facility-ed25519.pem")


class TLSSettings(_Strict):
    cert: Path
    key: Path
    client_ca: Path | None = None  # set = mutual TLS: clients must present a certificate


class HL7IntakeSettings(_Strict):
    """What every HL7v2 feed has, whatever carries it (TCP or a serial line): the intake and
    ACK rules (issue 3)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    ack: Literal["on-commit", "on-processed"] = "on-commit"
    commit_acks: bool = False  # MLLP Release 2 commit acknowledgements
    max_frame_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Warn (log + metric) when no message has arrived for this long; 0: never.
    silence_warning_s: float = Field(default=0.0, ge=0)
    fallback_charset: str = "latin-1"
    versions: tuple[str, ...] = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6",
                                 "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9")
    processing_ids: tuple[str, ...] = ("P", "D", "T")

    @field_validator("fallback_charset")
    @classmethod
    def _codec(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"{value!r} is not a known character set") from exc
        return value


class MLLPListenerSettings(HL7IntakeSettings):
    bind: BindField
    max_connections: int = Field(default=64, ge=1, le=10_000)
    idle_timeout_s: float = Field(default=3600.0, gt=0)
    frame_timeout_s: float = Field(default=60.0, gt=0)
    allow: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    tls: TLSSettings | None = None

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR network") from exc
        return value


class SerialDeviceProfileSettings(_Strict):
    """ASTM instrument quirks (see ``edge.astm.profile``)."""

    test_code_system: str = ""  # URI of the instrument's test codes; empty = none
    test_code_component: int = Field(default=4, ge=1, le=10)  # of the universal test id
    units: dict[str, str] = Field(default_factory=dict)  # test code -> unit override

    @field_validator("test_code_system")
    @classmethod
    def _system(cls, value: str) -> str:
        if value and not _ABSOLUTE_URI.match(value):
            raise ValueError(f"{value!r} is not an absolute URI")
        return value


class SerialListenerSettings(HL7IntakeSettings):
    """A serial line (a device path, or a pyserial URL: socket://, rfc2217://, loop://).
    The intake rules are those of an [[mllp]] listener (protocol "mllp"; H-12 for "astm")."""

    port: str = Field(min_length=1)
    protocol: Literal["mllp", "astm"]
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = 1
    xonxoff: bool = False
    rtscts: bool = False
    # Reopening a port that failed or vanished: first wait, doubled up to the maximum.
    reconnect_initial_s: float = Field(default=1.0, gt=0, le=3600)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    profile: SerialDeviceProfileSettings = SerialDeviceProfileSettings()

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError("must be 1, 1.5 or 2")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> SerialListenerSettings:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be less than reconnect_initial_s")
        return self


class FHIRSourceTLSSettings(_Strict):
    """TLS towards an upstream FHIR server: its CA, and our client certificate for mutual TLS."""

    ca: Path | None = None  # CA bundle for the server's certificate; None = the system CAs
    cert: Path | None = None  # client certificate (PEM) for mutual TLS
    key: Path | None = None  # its private key

    @model_validator(mode="after")
    def _pair(self) -> FHIRSourceTLSSettings:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        if self.ca is not None:
            _absolute(self.ca, "ca")
        return self


def _absolute(path: Path, key: str) -> Path:
    # The loader resolves only the path keys it knows against the config's folder; these
    # must be absolute so a relative one is never taken from the working directory.
    if not path.is_absolute():
        raise ValueError(f"{key}: must be an absolute path")
    return path


class FHIRSourceSettings(_Strict):
    """An upstream FHIR server polled for changes (see docs/fhir.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    base_url: str = Field(pattern=r"^https?://\S+$")
    resource_types: tuple[str, ...] = Field(min_length=1)
    interval_s: float = Field(default=300.0, gt=0, le=86_400)
    page_size: int = Field(default=100, ge=1, le=1000)
    bulk: Literal["auto", "never"] = "auto"  # "auto": $export when the server offers it
    bearer_token_file: Path | None = None  # the token itself (mode 0400); sent as Bearer
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=600.0, gt=0, le=86_400)
    tls: FHIRSourceTLSSettings | None = None

    @field_validator("resource_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Z][A-Za-z]{1,63}", name):
                raise ValueError(f"{name!r} is not a FHIR resource type")
        return value

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("bearer_token_file")
    @classmethod
    def _token_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value, "bearer_token_file")


class FHIRSettings(_Strict):
    """The FHIR R4 REST API for local systems, and the upstream sources (docs/fhir.md)."""

    bind: BindField = Bind(host="127.0.0.1", port=8080)
    # Anonymous requests, only from loopback addresses (a demo instance; never production).
    allow_anonymous_loopback: bool = False
    # "NAME sha256:HEX" per line: the SHA-256 of each client's bearer token, never the token.
    tokens_file: Path | None = None
    tls: TLSSettings | None = None
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    default_count: int = Field(default=50, ge=1, le=1000)  # search page size without _count
    max_count: int = Field(default=500, ge=1, le=10_000)
    sources: tuple[FHIRSourceSettings, ...] = ()

    @field_validator("tokens_file")
    @classmethod
    def _tokens_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value, "tokens_file")

    @model_validator(mode="after")
    def _some_client_can_authenticate(self) -> FHIRSettings:
        mutual_tls = self.tls is not None and self.tls.client_ca is not None
        if not (mutual_tls or self.tokens_file is not None or self.allow_anonymous_loopback):
            raise ValueError("no client could authenticate: set tokens_file, tls.client_ca "
                             "or allow_anonymous_loopback")
        _require_unique("source names", [source.name for source in self.sources])
        return self


class AdminSettings(_Strict):
    bind: BindField = Bind(host="127.0.0.1", port=9100)


class EVMSettings(_Strict):
    rpc_url: str
    chain_id: int = Field(ge=1)
    contract: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    key_file: Path
    confirmations: int = Field(default=1, ge=1, le=64)


class LedgerSettings(_Strict):
    backend: Literal["local", "evm"] = "local"
    anchor_interval_s: float = Field(default=10.0, gt=0, le=86_400)
    evm: EVMSettings | None = None

    @model_validator(mode="after")
    def _evm_needs_settings(self) -> LedgerSettings:
        if self.backend == "evm" and self.evm is None:
            raise ValueError("backend 'evm' needs a [ledger.evm] table")
        return self


class PeerTLSSettings(_Strict):
    """Mutual TLS of the peer listener and of ``peer query`` (issue 8)."""

    cert: Path  # this node's certificate, issued by the consortium CA
    key: Path
    ca: Path  # the consortium CA: clients and servers must present a certificate it signed
    crl: Path | None = None  # PEM CRL of that CA; set = revoked certificates are refused


_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{2}(:?[0-9a-fA-F]{2}){31}$")


class PeerEntrySettings(_Strict):
    """A facility of the peer directory: how to reach it and how to recognize it."""

    id: FacilityId
    url: str = Field(pattern=r"^https://\S+$")
    certificate_sha256: str | None = None  # SHA-256 of its certificate (DER), hex
    certificate_subject: str | None = None  # or its subject, RFC 4514 (e.g. "CN=x,O=y")
    signing_key: str  # its Ed25519 key as a signed-note vkey (``hie-edge/<id>+<kid>+<key>``)

    @field_validator("certificate_sha256")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256_HEX.match(value):
            raise ValueError("must be 32 bytes in hex (colons allowed)")
        return value

    @model_validator(mode="after")
    def _recognizable(self) -> PeerEntrySettings:
        from ledger_client.checkpoint import NoteVerifier, origin_for
        from ledger_client.errors import CheckpointError

        if self.certificate_sha256 is None and self.certificate_subject is None:
            raise ValueError("needs certificate_sha256 or certificate_subject")
        try:
            verifier = NoteVerifier.from_vkey(self.signing_key)
        except CheckpointError as exc:
            raise ValueError(f"signing_key: {exc}") from None
        if verifier.name != origin_for(self.id):
            raise ValueError(f"signing_key: key name must be {origin_for(self.id)!r}")
        return self


class PeerWebhookSettings(_Strict):
    """Where access notifications go (PHI-minimal JSON, HMAC-SHA256 signed)."""

    url: str = Field(pattern=r"^https?://\S+$")
    secret_file: Path
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=20, ge=1, le=1000)


class PeerSettings(_Strict):
    bind: BindField = Bind(host="0.0.0.0", port=8443)  # noqa: S104 - peers reach it remotely
    tls: PeerTLSSettings
    peers: tuple[PeerEntrySettings, ...] = ()
    default_consent: Literal["deny", "permit-treatment", "break-glass-only"] = "deny"
    break_glass_roles: tuple[str, ...] = ()
    jwt_max_age_s: float = Field(default=300.0, gt=0, le=3600)
    page_size: int = Field(default=50, ge=1, le=1000)
    query_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # Processes serving the peer API (edge.peer.workers); 0 serves it in the daemon itself.
    workers: int = Field(default=2, ge=0, le=32)
    webhook: PeerWebhookSettings | None = None

    @field_validator("peers")
    @classmethod
    def _unique_peers(
        cls, value: tuple[PeerEntrySettings, ...]
    ) -> tuple[PeerEntrySettings, ...]:
        _require_unique("peer ids", [peer.id for peer in value])
        return value


class LoggingSettings(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class DaemonSettings(_Strict):
    # How long SIGTERM waits for in-flight work before cancelling it.
    shutdown_timeout_s: float = Field(default=10.0, gt=0, le=600)


class Settings(_Strict):
    facility: FacilitySettings
    storage: StorageSettings = StorageSettings()
    keys: KeySettings = KeySettings()
    mllp: tuple[MLLPListenerSettings, ...] = ()
    serial: tuple[SerialListenerSettings, ...] = ()
    admin: AdminSettings = AdminSettings()
    fhir: FHIRSettings | None = None
    ledger: LedgerSettings = LedgerSettings()
    logging: LoggingSettings = LoggingSettings()
    daemon: DaemonSettings = DaemonSettings()
    peer: PeerSettings | None = None

    @field_validator("mllp")
    @classmethod
    def _unique_names(
        cls, value: tuple[MLLPListenerSettings, ...]
    ) -> tuple[MLLPListenerSettings, ...]:
        _require_unique("listener names", [listener.name for listener in value])
        return value

    @model_validator(mode="after")
    def _unique_listener_names(self) -> Settings:
        # Intake finds a listener's rules by name, across MLLP and serial listeners.
        _require_unique("listener names",
                        [item.name for item in self.mllp] + [item.name for item in self.serial])
        return self
