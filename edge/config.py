"""Gateway configuration: one TOML file describes one gateway.

Every mistake becomes one readable line naming the file, the key path and the fix, e.g.
``gateway.toml: characteristics[2].usl (9.5) must be greater than lsl (10.5)``. Unknown keys are errors.
The commented example is ``gateway/example.toml``; ``floorwatch check-config FILE`` validates a file.

Secrets are never required inline: the MQTT password comes from ``password_file`` or ``password_env``.

This module validates the structure common to all drivers. Driver-specific ``options`` tables are
validated by the driver registry (``floorwatch.drivers.registry``), which ``floorwatch check-config`` runs as well.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import ssl
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from floorwatch.edge.signals import DEFAULT_RULES, RULE_NAMES, unknown_rule_message

M = TypeVar("M", bound=BaseModel)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_size(value: int | str) -> int:
    """Bytes from ``512 MiB``, ``2GB`` or a plain integer.

    >>> parse_size("512 MiB"), parse_size("2GB"), parse_size(4096)
    (536870912, 2000000000, 4096)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
    raise ValueError(f"{value!r} is not a size; write bytes as an integer or e.g. \"512 MiB\", \"2 GB\"")


class StrictModel(BaseModel):
    """Configuration tables: unknown keys are errors (a typo never goes unnoticed), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_Strict = StrictModel


class GatewayIdentity(_Strict):
    site: Name = Field(description="Factory or site, e.g. 'dongguan-2'")
    line: Name = Field(description="Production line, e.g. 'line-3'")
    id: Name = Field(description="This gateway's id, unique in the site")
    data_dir: Path = Field(Path("/var/lib/floorwatch"), description="Spool, sequence and statistics state")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class SerialSettings(_Strict):
    """Port settings; every field left out takes the driver's default (see docs/drivers/)."""

    baudrate: Literal[300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] | None = None
    bytesize: Literal[7, 8] | None = None
    parity: Literal["N", "E", "O"] | None = None
    stopbits: Literal[1, 2] | None = None
    rtscts: bool | None = None
    # Kernel RS-485 mode for half-duplex transceivers that need direction control (pyserial rs485_mode).
    rs485: bool = False


class ModbusSettings(_Strict):
    unit_ids: list[Annotated[int, Field(ge=0, le=247)]] = Field(default_factory=lambda: [1], min_length=1)
    # Pause after each request: some devices need quiet time on the bus before the next one.
    inter_request_delay: float = Field(0.0, ge=0, le=10)


class InstrumentConfig(_Strict):
    name: Name
    driver: Name = Field(description="A driver name from floorwatch.drivers.registry, e.g. 'mitutoyo', 'mtsics', 'modbus'")
    port: str | None = Field(None, description="Serial device; prefer /dev/serial/by-id/… (stable across replugs)")
    host: str | None = Field(None, description="Modbus TCP host")
    tcp_port: int = Field(502, ge=1, le=65535)
    serial: SerialSettings = Field(default_factory=SerialSettings)
    modbus: ModbusSettings | None = None
    poll_interval: float = Field(1.0, gt=0, le=3600, description="Seconds between requests for polled devices")
    timeout: float = Field(1.0, gt=0, le=60, description="Seconds to wait for a reply or a frame")
    simulate: str | None = Field(
        None, description="Run a simulator scenario (e.g. 'normal', 'drift') instead of real hardware"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Driver-specific settings")

    @model_validator(mode="after")
    def _where(self) -> InstrumentConfig:
        if self.simulate is None and self.port is None and self.host is None:
            raise ValueError(
                f"instrument {self.name!r} needs 'port' (serial device) or 'host' (Modbus TCP), "
                "or 'simulate' (a simulator scenario)"
            )
        if self.port is not None and self.host is not None:
            raise ValueError(f"instrument {self.name!r} has both 'port' and 'host'; keep the one it is wired to")
        return self


class ControlLimits(_Strict):
    """Control limits for the rules: given (center and sigma), or learned from the first ``baseline`` readings."""

    center: float | None = None
    sigma: float | None = Field(None, gt=0)
    baseline: int = Field(100, ge=10, le=1_000_000, description="Readings to learn limits from")

    @model_validator(mode="after")
    def _both(self) -> ControlLimits:
        if (self.center is None) != (self.sigma is None):
            raise ValueError("give both 'center' and 'sigma' or neither (then they are learned from the baseline)")
        return self


class CharacteristicConfig(_Strict):
    name: Name
    instrument: Name
    channel: str = Field("", description="Which value of a multi-channel instrument; '' for single-value")
    unit: str = Field(description="Unit readings are normalised to, e.g. 'mm', 'g', 'kg', 'pcs'")
    nominal: float | None = None
    lsl: float | None = Field(None, description="Lower spec limit; leave out for a one-sided spec")
    usl: float | None = Field(None, description="Upper spec limit; leave out for a one-sided spec")
    subgroup_size: int = Field(1, ge=1, le=10, description="1 = individuals (I-MR), 2..10 = Xbar-R/S")
    window: int = Field(1000, ge=2, le=1_000_000, description="Rolling window in readings")
    rules: list[str] = Field(default_factory=lambda: list(DEFAULT_RULES))
    control: ControlLimits = Field(default_factory=ControlLimits)
    ewma_lambda: float = Field(0.2, gt=0, le=1)
    ewma_l: float = Field(3.0, gt=0)
    cusum_k: float = Field(0.5, ge=0, description="CUSUM allowance in sigma")
    cusum_h: float = Field(5.0, gt=0, description="CUSUM decision interval in sigma")
    min_cpk: float | None = Field(None, gt=0, description="Alert when Cpk over the window falls below")
    kind: Literal["measurement", "count"] = Field(
        "measurement", description="'count' for production counters (rate and line-stopped, no SPC)"
    )
    idle_after: float = Field(300.0, gt=0, description="Seconds without new parts before 'line stopped'")

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if rule not in RULE_NAMES:
                raise ValueError(unknown_rule_message(rule))
        if len(set(rules)) != len(rules):
            raise ValueError("a rule is listed twice")
        return rules

    @model_validator(mode="after")
    def _limits(self) -> CharacteristicConfig:
        for key in ("nominal", "lsl", "usl"):
            v = getattr(self, key)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{key} must be a finite number")
        if self.lsl is not None and self.usl is not None and self.usl <= self.lsl:
            raise _KeyError("usl", f"usl ({self.usl:g}) must be greater than lsl ({self.lsl:g})")
        if self.nominal is not None:
            if self.lsl is not None and self.nominal < self.lsl or self.usl is not None and self.nominal > self.usl:
                raise _KeyError("nominal", f"nominal ({self.nominal:g}) must lie within the spec limits")
        if self.window < self.subgroup_size * 2:
            raise _KeyError("window", f"window ({self.window}) must hold at least two subgroups of {self.subgroup_size}")
        return self


class BrokerSettings(_Strict):
    """How to reach and authenticate with an MQTT broker: shared by the gateway's [mqtt] and the bridge's."""

    url: str = Field("mqtt://localhost:1883", description="mqtt://host:port or mqtts://host:port (TLS)")
    topic_prefix: str = Field("floorwatch/v1", pattern=r"^[^#+\s]+[^/#+\s]$")
    keepalive: int = Field(30, ge=5, le=3600)
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    ca_file: Path | None = Field(None, description="CA certificate for the broker; system CAs if omitted")
    cert_file: Path | None = Field(None, description="Client certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, description="Key of the client certificate (PEM)")
    tls_insecure: bool = Field(
        False, description="Do not check that the broker's certificate names its host (the chain is still "
        "verified); for a broker reached by an address its certificate does not name. Never in production"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"{url!r} is not a broker URL; write mqtt://host:1883 or mqtts://host:8883")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        return url

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme in ("mqtts", "ssl")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @model_validator(mode="after")
    def _secrets(self) -> BrokerSettings:
        if self.password_file is not None and self.password_env is not None:
            raise _KeyError("password_file", "give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise _KeyError("username", "a password is configured but no username")
        if (self.cert_file is None) != (self.key_file is None):
            raise _KeyError("cert_file", "a client certificate needs both cert_file and key_file")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise _KeyError("url", "TLS files are set but the URL is not mqtts://; use mqtts://host:8883")
        return self

    def password(self) -> str | None:
        """Read the password at connect time, so that it never sits in the configuration file."""
        return read_secret("mqtt.password", self.password_file, self.password_env, "the password")

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context (None for mqtt://), verifying the broker; :class:`ConfigError` naming the file that
        cannot be loaded."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except FileNotFoundError:
            raise ConfigError(f"mqtt.ca_file: {self.ca_file} does not exist; give the PEM file of the CA that "
                              "signed the broker's certificate") from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"mqtt.ca_file: {self.ca_file} is not a readable PEM CA certificate ({exc})") from None
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
            except FileNotFoundError as exc:
                raise ConfigError(f"mqtt.cert_file/key_file: {exc.filename or exc} does not exist") from None
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"mqtt.cert_file/key_file: cannot load the client certificate ({exc}); check "
                                  "both are PEM and that the key belongs to the certificate") from None
        if self.tls_insecure:  # as paho's tls_insecure_set: the host name is not checked, the chain still is
            ctx.check_hostname = False
        return ctx


class MqttConfig(BrokerSettings):
    client_id: str | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    qos: Literal[0, 1] = 1
    max_batch: int = Field(500, ge=1, le=10_000, description="Readings per MQTT message at most")
    max_inflight: int = Field(20, ge=1, le=1000)


class SpoolConfig(_Strict):
    path: Path = Field(Path("spool.sqlite"), description="Relative paths are under gateway.data_dir")
    max_bytes: int = Field(512 * 1024**2, description="Disk budget; oldest data dropped (and reported) beyond")
    flush_interval: float = Field(1.0, gt=0, le=60, description="Seconds between batched writes to disk")
    backlog_alert: int = Field(100_000, ge=1, description="Alert when more records wait to be published")

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        size = parse_size(v)
        if size < 1024**2:
            raise ValueError(f"max_bytes ({size}) is below 1 MiB; a spool needs room for an outage")
        return size


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
# Tokens travel in an Authorization header, a URL and a cookie: visible ASCII without separators, and long
# enough that guessing is hopeless (`openssl rand -hex 16` gives 32 characters).
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")


class WebConfig(_Strict):
    """The local web page: where it listens, how many connections it holds, who may see and change what."""

    enabled: bool = True
    bind: str = Field("127.0.0.1:8080", description="host:port of the local status page")
    max_connections: int = Field(
        64, ge=4, le=1000,
        description="Connections the page holds at once; more are refused at once, so that idle or slow "
        "clients never take the file descriptors the spool, the serial ports and the broker need",
    )
    idle_timeout: float = Field(
        10.0, ge=1, le=300,
        description="Seconds a connection has to send a complete request after it opens or after its last "
        "answer; then it is closed (idle sockets and clients that trickle their headers go)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the page answers to besides IP addresses, localhost and this machine's own "
        "name (and <name>.local); any other name is refused (DNS-rebinding protection)",
    )
    view_token_file: Path | None = Field(None, description="File holding the token needed to view the page")
    view_token_env: str | None = Field(None, description="Environment variable holding the view token")
    action_token_file: Path | None = Field(
        None, description="File holding the token needed for anything that changes the gateway")
    action_token_env: str | None = Field(None, description="Environment variable holding the action token")

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not host:port, e.g. '127.0.0.1:8080' or '0.0.0.0:8080'")
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        names = []
        for host in hosts:
            name = host.strip().lower().removesuffix(".")
            if "://" in name or ":" in name or "/" in name:
                raise ValueError(f"{host!r}: give the host name only, without scheme, port or path "
                                 "(e.g. 'gateway-3.plant.lan')")
            if not _HOST_NAME.match(name):
                raise ValueError(f"{host!r} is not a host name (letters, digits, '-' and dots, e.g. "
                                 "'gateway-3.plant.lan'); IP addresses need no entry")
            names.append(name)
        return names

    @model_validator(mode="after")
    def _token_sources(self) -> WebConfig:
        for kind in ("view", "action"):
            if getattr(self, f"{kind}_token_file") is not None and getattr(self, f"{kind}_token_env") is not None:
                raise _KeyError(f"{kind}_token_file", f"give {kind}_token_file or {kind}_token_env, not both")
        return self

    def view_token(self) -> str | None:
        """The token that viewing needs, or None when the page is open to everyone who reaches it.

        Read when the page starts, so that it never sits in the configuration file; :class:`ConfigError`
        naming the key when it cannot be read or is too weak."""
        return _read_token("view", self.view_token_file, self.view_token_env)

    def action_token(self) -> str | None:
        """The token that any change through the page needs, or None when changes are off."""
        return _read_token("action", self.action_token_file, self.action_token_env)


def read_secret(key: str, path: Path | None, env: str | None, what: str) -> str | None:
    """A secret from ``<key>_file`` (one line) or ``<key>_env``, read when it is needed so that it never sits
    in the configuration file; None when neither is set; :class:`ConfigError` naming the key and the fix."""
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{key}_file: cannot read {path}: {exc.strerror or exc}; create it (one line, "
                              f"{what}) readable by the service's user") from None
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{key}_env: environment variable {env} is not set")
        return value
    return None


def _read_token(kind: str, path: Path | None, env: str | None) -> str | None:
    key = f"web.{kind}_token"
    value = read_secret(key, path, env, "the token, e.g. from `openssl rand -hex 16`")
    if value is None:
        return None
    value = value.strip()
    if not _TOKEN.match(value):
        source = f"{key}_file" if path is not None else f"{key}_env"
        raise ConfigError(f"{source}: the token must be 16 to 256 letters, digits or '._~+/=-' (no spaces); "
                          "make one with `openssl rand -hex 16`")
    return value


class AlertsConfig(_Strict):
    webhook_url: str | None = None
    webhook_timeout: float = Field(5.0, gt=0, le=120)
    debounce: int = Field(1, ge=1, le=100, description="Consecutive points before an alert is raised")
    clear_after: int = Field(3, ge=1, le=1000, description="Consecutive good points before it clears")
    rule_clear_after: int = Field(
        25, ge=1, le=10_000,
        description="Consecutive points without the rule firing before a control-rule, EWMA or CUSUM alert "
        "clears (rules fire on single points: a short count makes them flap while a process drifts)",
    )
    hysteresis: float = Field(0.0, ge=0, description="Fraction of the tolerance a value must move back inside")

    @field_validator("webhook_url")
    @classmethod
    def _hook(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class GatewayConfig(_Strict):
    gateway: GatewayIdentity
    instruments: list[InstrumentConfig] = Field(min_length=1)
    characteristics: list[CharacteristicConfig] = Field(min_length=1)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        _unique("instruments", [i.name for i in self.instruments])
        _unique("characteristics", [c.name for c in self.characteristics])
        known = {i.name: n for n, i in enumerate(self.instruments)}
        for n, c in enumerate(self.characteristics):
            if c.instrument not in known:
                close = difflib.get_close_matches(c.instrument, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"instruments are: {', '.join(known)}"
                raise _KeyError(
                    f"characteristics[{n}].instrument", f"no instrument named {c.instrument!r}; {hint}"
                )
        feeds: dict[tuple[str, str], str] = {}
        for n, c in enumerate(self.characteristics):
            key = (c.instrument, c.channel)
            if key in feeds:
                raise _KeyError(
                    f"characteristics[{n}].channel",
                    f"{c.instrument!r} channel {c.channel!r} already feeds {feeds[key]!r}; give each its own channel",
                )
            feeds[key] = c.name
        return self

    def spool_path(self) -> Path:
        return self.spool.path if self.spool.path.is_absolute() else self.gateway.data_dir / self.spool.path

    def instrument(self, name: str) -> InstrumentConfig:
        return next(i for i in self.instruments if i.name == name)


def _unique(section: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for n, name in enumerate(names):
        if name in seen:
            raise _KeyError(f"{section}[{n}].name", f"{name!r} is already used by {section}[{seen[name]}]")
        seen[name] = n


class _KeyError(ValueError):
    """A validation error that belongs to a more precise key than the model it was raised in."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class ConfigError(Exception):
    """One or more configuration mistakes; ``problems`` holds one line each (file: key: what and fix)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), ann)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _nested_home(model: type[BaseModel], key: str) -> str | None:
    """Name of the sub-table of ``model`` where ``key`` is a valid key (e.g. baudrate -> serial)."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        for a in (ann, *getattr(ann, "__args__", ())):
            if isinstance(a, type) and issubclass(a, BaseModel) and key in a.model_fields:
                return name
    return None


def format_errors(source: str, exc: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per problem: ``file: key.path: what is wrong (and the fix)``.

    ``root`` is the model that was validated (the gateway configuration unless said otherwise); it is
    used to suggest the right key for an unknown one.
    """
    root = root or GatewayConfig
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _KeyError):
            parent = _loc(loc)
            path = ctx_err.key if ctx_err.key.startswith(("characteristics", "instruments")) else (
                f"{parent}.{ctx_err.key}" if parent else ctx_err.key)
            lines.append(f"{source}: {path}: {ctx_err.message}")
            continue
        path = _loc(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(root, loc[:-1])
            known = list(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            nested = _nested_home(parent, str(loc[-1])) if parent else None
            if close:
                hint = f"did you mean {close[0]!r}?"
            elif nested:
                hint = f"it belongs in the [{_loc(loc[:-1])}.{nested}] table"
            else:
                hint = f"allowed keys: {', '.join(known)}" if known else "remove it"
            lines.append(f"{source}: {path}: unknown key; {hint}")
        elif kind == "missing":
            lines.append(f"{source}: {path}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if kind == "string_pattern_mismatch" and err["ctx"].get("pattern") == NAME_PATTERN:
                msg = "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            if kind.startswith("literal_error"):
                msg = msg.replace("Input should be", "must be")
            value = err.get("input")
            shown = "" if isinstance(value, dict | list) or kind in ("value_error",) else f" (got {value!r})"
            lines.append(f"{source}: {path}: {msg}{shown}")
    return lines


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate ``data`` against ``model``; :class:`ConfigError` with one line per problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = format_errors(source, exc, model)
        raise ConfigError("\n".join(problems), problems) from None


def read_toml(path: str | os.PathLike[str], example: str) -> dict[str, Any]:
    """The table of a TOML file; :class:`ConfigError` naming the file (and ``example`` to start from)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; copy {example} to start from") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def parse_config(data: dict[str, Any], source: str = "<config>") -> GatewayConfig:
    return validate(GatewayConfig, data, source)


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a gateway TOML file; raises :class:`ConfigError` with one line per problem."""
    return parse_config(read_toml(path, "gateway/example.toml"), source=Path(path).name)
