"""Prometheus metrics. One registry per daemon (not the global one), so tests and reloads
never see another instance's numbers. Labels carry listener names and ACK codes, never data."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter("hie_edge_messages_received", "HL7v2 messages received",
                                ["listener"], registry=r)
        self.acks = Counter("hie_edge_acks", "Acknowledgements sent, by MSA-1 code",
                            ["listener", "code"], registry=r)
        self.duplicates = Counter("hie_edge_duplicates",
                                  "Messages recognised as duplicates and not stored again",
                                  ["listener"], registry=r)
        self.dead_letters = Counter("hie_edge_dead_letters",
                                    "Messages put in the dead-letter state", ["listener"],
                                    registry=r)
        self.frame_errors = Counter("hie_edge_frame_errors",
                                    "MLLP framing problems (garbage, oversize, truncated)",
                                    ["listener", "kind"], registry=r)
        self.ack_latency = Histogram(
            "hie_edge_ack_latency_seconds", "From a frame's last byte to its ACK being written",
            ["listener"], registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0))
        self.connections = Gauge("hie_edge_connections", "Open connections", ["listener"],
                                 registry=r)
        self.refused = Counter("hie_edge_connections_refused",
                               "Connections refused (allowlist, limit, TLS)",
                               ["listener", "reason"], registry=r)
        self.last_message = Gauge("hie_edge_listener_last_message_timestamp_seconds",
                                  "When the listener last received a message (Unix time)",
                                  ["listener"], registry=r)
        self.silent = Gauge("hie_edge_listener_silent",
                            "1 when the listener has had no message for silence_warning_s",
                            ["listener"], registry=r)
        self.raw_pruned = Counter("hie_edge_raw_messages_pruned",
                                  "Raw payloads dropped by the retention policy", registry=r)
        # The same facts for code to read (prometheus-client has no public getter).
        self.last_message_at: dict[str, float] = {}
        self.silent_listeners: set[str] = set()
        self.inbox_pending = Gauge("hie_edge_inbox_pending",
                                   "Messages committed and waiting for later stages", registry=r)
        self.inbox_dead = Gauge("hie_edge_inbox_dead_letters",
                                "Messages currently in the dead-letter state", registry=r)

    def message_received(self, listener: str) -> None:
        now = time.time()
        self.received.labels(listener).inc()
        self.last_message.labels(listener).set(now)
        self.last_message_at[listener] = now
