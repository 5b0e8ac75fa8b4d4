"""The MQTT topic scheme (documented in docs/payloads.md), built and parsed in one place.

>>> t = Topics("floorwatch/v1", "dongguan-2", "line-3", "gw-01")
>>> t.readings
'floorwatch/v1/dongguan-2/line-3/gw-01/readings'
>>> t.alert("bore_diameter", "nelson_1")
'floorwatch/v1/dongguan-2/line-3/gw-01/alerts/bore_diameter/nelson_1'
>>> parse_topic("floorwatch/v1", t.stats("net_weight"))
TopicParts(site='dongguan-2', line='line-3', gateway='gw-01', kind='stats', subject='net_weight', rest='')
>>> Topics.subscription("floorwatch/v1")
'floorwatch/v1/+/+/+/#'

The presence topic had a former name, which older gateways still publish; it parses as ``presence``:

>>> parse_topic("floorwatch/v1", "floorwatch/v1/dongguan-2/line-3/gw-01/status").kind
'presence'
"""

from __future__ import annotations

from dataclasses import dataclass

# kinds of topic under a gateway's prefix
READINGS = "readings"  # batches of readings (sequence-numbered)
STATS = "stats"  # statistics snapshots, one topic per characteristic (sequence-numbered)
ALERTS = "alerts"  # alert raised/cleared events (sequence-numbered)
EVENTS = "events"  # health events: changes of state of instruments, the spool, the gateway (sequence-numbered)
ACTIVE = "active"  # retained copy of each active alert; emptied when it clears (not numbered)
PRESENCE = "presence"  # retained presence: online / offline (the last will), not numbered

# Topic kinds by the name older gateways published them under: a reader takes them as the current kind (the
# compatibility rule in docs/payloads.md); a gateway never publishes them.
FORMER_KINDS = {"status": PRESENCE}

SEQUENCED = frozenset({READINGS, STATS, ALERTS, EVENTS})


@dataclass(frozen=True, slots=True)
class TopicParts:
    site: str
    line: str
    gateway: str
    kind: str
    subject: str = ""
    rest: str = ""


class Topics:
    def __init__(self, prefix: str, site: str, line: str, gateway: str) -> None:
        self.base = f"{prefix.rstrip('/')}/{site}/{line}/{gateway}"
        self.readings = f"{self.base}/{READINGS}"
        self.presence = f"{self.base}/{PRESENCE}"

    def stats(self, characteristic: str) -> str:
        return f"{self.base}/{STATS}/{characteristic}"

    def alert(self, subject: str, kind: str) -> str:
        return f"{self.base}/{ALERTS}/{subject}/{kind}"

    def active(self, subject: str, kind: str) -> str:
        return f"{self.base}/{ACTIVE}/{subject}/{kind}"

    def event(self, subject: str) -> str:
        return f"{self.base}/{EVENTS}/{subject}"

    @staticmethod
    def subscription(prefix: str) -> str:
        """Every topic of every gateway under ``prefix``."""
        return f"{prefix.rstrip('/')}/+/+/+/#"


def parse_topic(prefix: str, topic: str) -> TopicParts | None:
    """Split a topic of this scheme; None when it is not one. A kind's former name gives the current kind."""
    prefix = prefix.rstrip("/") + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) < 4 or not all(parts[:4]):
        return None
    site, line, gateway, kind, *more = parts
    subject = more[0] if more else ""
    rest = "/".join(more[1:])
    return TopicParts(site, line, gateway, FORMER_KINDS.get(kind, kind), subject, rest)
