"""The bridge's configuration: a TOML file of its own (commented example: ``bridge/example.toml``).

Validated with pydantic like the gateway's (unknown keys are errors, one line per problem naming the file,
the key path and the fix). Secrets are named here and read only when asked for (:meth:`BridgeInflux.token`,
``BrokerSettings.password``), so that a check on another machine can validate the content alone.

>>> config = parse_bridge_config({"mqtt": {"group": "plant-a", "gateways": "dongguan-2/+/+"}})
>>> config.mqtt.subscription
'$share/plant-a/floorwatch/v1/dongguan-2/+/+/#'
>>> parse_bridge_config({"influxdb": {"batch_size": 0}}, "bridge.toml")
Traceback (most recent call last):
...
floorwatch.edge.config.ConfigError: bridge.toml: influxdb.batch_size: Input should be greater than or equal to 1 (got 0)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from pydantic import Field, field_validator, model_validator

from floorwatch.edge.config import BrokerSettings, StrictModel, read_secret, read_toml, validate

EXAMPLE = "bridge/example.toml"  # what an error about a missing file tells the user to copy


class BridgeMqtt(BrokerSettings):
    client_id: str = Field(
        default_factory=lambda: f"floorwatch-bridge-{socket.gethostname()}",
        description="Stable per instance: the broker keeps this session's messages while the bridge is away",
    )
    group: str = Field("floorwatch-bridge", pattern=r"^[^/#+\s]+$", description="Shared-subscription group")
    gateways: str = Field("+/+/+", description="site/line/gateway filter under the prefix, e.g. 'dongguan-2/+/+'")
    session_expiry: int = Field(7 * 24 * 3600, ge=60, description="Seconds the broker keeps the session")
    receive_maximum: int = Field(100, ge=1, le=65535, description="Unacknowledged messages in flight to us")
    dead_letter_topic: str = Field("floorwatch/deadletter", pattern=r"^[^#+\s]+[^/#+\s]$")

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, v: str) -> str:
        parts = v.split("/")
        if len(parts) != 3 or not all(parts) or any("#" in p or ("+" in p and p != "+") for p in parts):
            raise ValueError(f"{v!r} is not site/line/gateway; use names or '+', e.g. 'dongguan-2/+/+'")
        return v

    @model_validator(mode="after")
    def _dead_letters_outside(self) -> BridgeMqtt:
        if mqtt.topic_matches_sub(self.topic_filter, self.dead_letter_topic + "/x/y/z/readings"):
            raise ValueError(
                f"dead_letter_topic {self.dead_letter_topic!r} lies under the subscription "
                f"{self.topic_filter!r}: dead letters would come back; choose a topic outside it"
            )
        return self

    @property
    def topic_filter(self) -> str:
        return f"{self.topic_prefix}/{self.gateways}/#"

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic_filter}"


class BridgeInflux(StrictModel):
    url: str = Field("http://localhost:8086", description="InfluxDB 2.x/3.x, or 1.8+ (compatibility API)")
    org: str = Field("-", description="Organisation (2.x); '-' for InfluxDB 1.8 and 3.x")
    bucket: str = Field("floorwatch", description="Bucket (2.x), database (3.x), 'database/rp' (1.8)")
    token_file: Path | None = Field(None, description="File holding the API token (1.8: 'user:password')")
    token_env: str | None = None
    timeout: float = Field(10.0, gt=0, le=300)
    gzip: bool = True
    batch_size: int = Field(5000, ge=1, le=100_000, description="Points per write at most")
    linger: float = Field(0.05, ge=0, le=10, description="Seconds to wait for more messages before a write")
    flush_interval: float = Field(1.0, gt=0, le=60, description="Seconds a batch waits at most")
    backoff_initial: float = Field(0.5, gt=0, le=60)
    backoff_max: float = Field(30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL, e.g. http://influxdb:8086")
        return url

    @model_validator(mode="after")
    def _token(self) -> BridgeInflux:
        if self.token_file is not None and self.token_env is not None:
            raise ValueError("give token_file or token_env, not both")
        return self

    def token(self) -> str:
        # "": InfluxDB 1.x without authentication, VictoriaMetrics
        return read_secret("influxdb.token", self.token_file, self.token_env, "the API token") or ""


class BridgeSequence(StrictModel):
    gap_grace: float = Field(10.0, ge=0, le=3600, description="Seconds a missing number may still arrive")
    reset_window: int = Field(1_000_000, ge=1000, description="A number this far below the highest = restart")
    state_file: Path | None = Field(None, description="Keep sequence state across bridge restarts")


class BridgeSection(StrictModel):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    dead_letter_file: Path | None = Field(None, description="Also append dead letters here (JSON lines)")
    gateway_configs: list[Path] = Field(
        default_factory=list, description="Gateway TOML files: their spec limits mark out-of-tolerance points"
    )


class BridgeConfig(StrictModel):
    bridge: BridgeSection = Field(default_factory=BridgeSection)
    mqtt: BridgeMqtt = Field(default_factory=BridgeMqtt)
    influxdb: BridgeInflux = Field(default_factory=BridgeInflux)
    sequence: BridgeSequence = Field(default_factory=BridgeSequence)


def parse_bridge_config(data: dict[str, Any], source: str = "<bridge config>") -> BridgeConfig:
    return validate(BridgeConfig, data, source)


def load_bridge_config(path: str | os.PathLike[str]) -> BridgeConfig:
    """Read and validate a bridge TOML file; :class:`ConfigError` with one line per problem."""
    return parse_bridge_config(read_toml(path, EXAMPLE), source=Path(path).name)
