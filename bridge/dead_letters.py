"""Dead letters: messages the bridge cannot store, kept with the reason instead of being lost.

Each goes to ``<dead_letter_topic>/<original topic>`` (QoS 1), to the log, and — with ``[bridge]
dead_letter_file`` — to a JSON-lines file. The invalid message is acknowledged only once its dead letter is
kept somewhere; until then the broker delivers it (and the bridge dead-letters it) again.

>>> letter = DeadLetter.of(Incoming(1, 1, "floorwatch/v1/s/l/g/readings", b"\\xff", False, 7, 0), "not JSON")
>>> print(letter.to_json())
{"reason":"not JSON","topic":"floorwatch/v1/s/l/g/readings","received_ns":7,"encoding":"base64","payload":"/w=="}
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from floorwatch.bridge.message import Incoming

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What is published and filed for a message: why, where it came from, and its payload (as text when
    it is UTF-8, else base64)."""

    reason: str
    topic: str
    received_ns: int
    encoding: str  # "utf-8" or "base64"
    payload: str

    @classmethod
    def of(cls, msg: Incoming, reason: str) -> DeadLetter:
        try:
            text, encoding = msg.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(msg.payload).decode(), "base64"
        return cls(reason, msg.topic, msg.received_ns, encoding, text)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))


@dataclass
class Posted:
    """A dead letter on its way: the broker's publish handle and whether the file took it."""

    message: Incoming
    info: mqtt.MQTTMessageInfo
    in_file: bool


class DeadLetters:
    """Publishes (and files) dead letters on the bridge's MQTT client, and tells when one is kept."""

    def __init__(self, client: mqtt.Client, topic: str, file: Path | None, username: str | None) -> None:
        self.client = client
        self.topic = topic
        self.file = file
        self.username = username  # named in the error when the broker's ACL refuses the dead letters
        self._refused: dict[int, str] = {}  # mid -> why the broker refused a dead letter

    def on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason_code: object,
                   properties: object) -> None:
        """paho's on_publish: MQTT 5 lets the broker take a publish and refuse it (e.g. not authorised)."""
        if getattr(reason_code, "is_failure", False):
            self._refused[mid] = str(reason_code)

    def post(self, msg: Incoming, reason: str) -> Posted:
        """Publish (and log, and append to the file) one dead letter."""
        body = DeadLetter.of(msg, reason).to_json()
        log.warning("dead letter from %s: %s", msg.topic, reason)
        info = self.client.publish(f"{self.topic}/{msg.topic}", body, qos=1)
        if self.file is None:
            return Posted(msg, info, False)
        try:
            with open(self.file, "a", encoding="utf-8") as fh:
                fh.write(body + "\n")
            return Posted(msg, info, True)
        except OSError as exc:
            log.error("cannot append to dead-letter file %s: %s", self.file, exc)
            return Posted(msg, info, False)

    def kept(self, posted: Posted) -> bool:
        """A dead letter is kept once the broker took it or the file did; until then the invalid message
        stays unacknowledged, so that the broker delivers it (and we dead-letter it) again."""
        info, msg = posted.info, posted.message
        try:
            info.wait_for_publish(timeout=5)
        except (ValueError, RuntimeError):
            pass
        refused = self._refused.pop(info.mid, None) if info.is_published() else None
        if refused is not None:
            # Keeping the message unacknowledged would not bring it back (no reconnect is coming) and would
            # hold one of the receive_maximum slots: say it loudly, with the payload, and go on.
            excerpt = msg.payload[:500].decode("utf-8", errors="replace")
            log.error("the broker refused the dead letter for %s (%s): check the ACL lets user %s write %s/#, "
                      "or set bridge.dead_letter_file; %s; payload: %r", msg.topic, refused,
                      self.username or "(anonymous)", self.topic,
                      "kept in the dead-letter file" if posted.in_file else "NOT kept anywhere else", excerpt)
            return True
        if info.is_published() or posted.in_file:
            return True
        log.error("dead letter for %s not delivered to the broker; leaving the message unacknowledged", msg.topic)
        return False
