"""One MQTT message as the bridge received it, with what is needed to acknowledge it later."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Incoming:
    """A received message. It is acknowledged (``mid``, ``qos``) only once its points are stored or it is
    kept as a dead letter, and only on the connection it came on."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    retain: bool
    received_ns: int
    generation: int  # connection it arrived on: an ack after a reconnect would hit a reused packet id
