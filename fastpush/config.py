"""fastpush configuration: the TOML contract, its defaults and its validation.

A config file ports an nginx push-stream setup line by line: every key is a
push-stream directive without its ``push_stream_`` prefix (or a plain nginx
directive push-stream setups rely on, or one of fastpush's own)::

    listen = ["127.0.0.1:9080"]
    workers = 2
    [settings]                  # the http block
    ping_message_interval = "10s"
    [[locations]]               # nginx locations, in order
    path = "/pub"
    role = "publisher"
    channels_path = "$arg_id"

The typed fields of :class:`Settings` and :class:`Location` *are* the registry:
each carries its default, validator and help text in its dataclass metadata, and
:data:`SETTINGS` (used by the loader and by :func:`render_reference_markdown`,
which writes ``docs/configuration.md``) is built from them, so the list of keys
is written exactly once.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the older Pythons only
    import tomli as tomllib

__all__ = [
    "DEFAULT_CONFIG_TOML",
    "LOG_LEVELS",
    "ROLES",
    "SETTINGS",
    "TOP_LEVEL",
    "Config",
    "ConfigError",
    "Location",
    "Setting",
    "Settings",
    "config_from_mapping",
    "default_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "render_reference_markdown",
]

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Padding = tuple["re.Pattern[str]", int, int]

# Role -> accepted modes, default first; "" is accepted for publisher and
# subscriber and means the default, as `push_stream_subscriber ""` does.
ROLES: dict[str, tuple[str, ...]] = {
    "publisher": ("normal", "admin"),
    "subscriber": ("streaming", "long-polling", "polling", "eventsource", "websocket"),
    "channels_statistics": ("",),
}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

# Python 3.10+ gets real __slots__ on the frozen dataclasses below; 3.9 cannot.
_SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid.

    ``key`` names where, as written in the file: ``settings.message_ttl``,
    ``locations[2].channels_path``, ``listen[0]``, ``workers`` or ``config``
    (the file itself).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # The default reduce would call __init__ with the formatted string only.
        return (type(self), (self.key, self.message))


# ---------------------------------------------------------------------------
# nginx value syntax
# ---------------------------------------------------------------------------

# nginx time units, largest first; a component's unit must be smaller than the
# one before it ("1h30m" and "1h 30m" are fine, "30m1h" is not).
_TIME_UNITS: dict[str, float] = {
    "y": 365 * 86400.0,
    "M": 30 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_TIME_RANK = {unit: rank for rank, unit in enumerate(_TIME_UNITS)}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|[yMwdhms])?\s*")
_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_duration(value: str | int | float) -> float:
    """Parse an nginx time value into seconds.

    Strings use nginx syntax: ``"500ms"``, ``"10s"``, ``"2m"``, ``"1h"``,
    ``"1d"``, ``"1w"``, ``"1M"`` (30 days), ``"1y"``, compounds such as
    ``"1m30s"`` or ``"1h 30m"``, and a bare number means seconds (``"30"``).
    Numbers (TOML ints and floats) are seconds. Fractions (``"1.5s"``) are a
    fastpush extension. Negative values raise :class:`ValueError`; whether zero
    is acceptable is the caller's call.
    """
    if isinstance(value, bool):
        # bool is an int subclass; `true` is never a duration.
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f'expected a duration such as "10s", got {value!r}')
    text = value.strip()
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    last_rank = -1
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {value!r}")
        number, unit = match.group(1), match.group(2)
        pos = match.end()
        if unit is None:
            # nginx reads a trailing unitless number as seconds.
            if pos != len(text):
                raise ValueError(f"invalid duration {value!r}")
            unit = "s"
        rank = _TIME_RANK[unit]
        if rank <= last_rank:
            raise ValueError(
                f"invalid duration {value!r}: units must go from larger to smaller"
            )
        last_rank = rank
        total += float(number) * _TIME_UNITS[unit]
    return total


def parse_size(value: str | int) -> int:
    """Parse an nginx size value into bytes: ``100``, ``"32k"``, ``"1m"``, ``"1g"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f'expected a size such as "32k", got {value!r}')
    match = _SIZE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"invalid size {value!r} (use bytes or k/m/g suffixes)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_listen(value: str | int) -> tuple[str, int]:
    """Parse one ``listen`` entry into ``(host, port)``.

    ``"127.0.0.1:9080"``, ``"[::1]:9080"``, ``"localhost:9080"``; ``":9080"``,
    ``"*:9080"``, ``"9080"`` and ``9080`` mean every IPv4 address. Port 0 asks
    the kernel for a free port (handy in tests).
    """
    if isinstance(value, bool):
        raise ValueError(f'expected "host:port", got {value!r}')
    if isinstance(value, int):
        host, port_text = "", str(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("unix:"):
            raise ValueError("unix sockets are not supported")
        if text.startswith("["):
            close = text.find("]")
            if close < 0 or not text[close + 1 :].startswith(":"):
                raise ValueError(f'invalid listen address {value!r} (use "[::1]:9080")')
            host, port_text = text[1:close], text[close + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"invalid IPv6 address in {value!r}") from None
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
            if ":" in host:
                raise ValueError(
                    f'invalid listen address {value!r} (write IPv6 as "[::1]:9080")'
                )
            if host == "*":
                host = ""
            elif host and not _HOSTNAME_RE.fullmatch(host):
                raise ValueError(f"invalid host in {value!r}")
        else:
            host, port_text = "", text
    else:
        raise ValueError(f'expected "host:port", got {value!r}')
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port in {value!r} (0-65535)")
    return (host or "0.0.0.0", int(port_text))


def _format_listen(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------------------
# validators: each turns a raw TOML value into its typed form or raises
# ConfigError naming the key; `kind` is what the reference docs show as type.
# ---------------------------------------------------------------------------


class _Validator:
    kind = "value"

    def __call__(self, key: str, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _Bool(_Validator):
    kind = "bool"
    _WORDS = {"on": True, "off": False, "true": True, "false": False}

    def __call__(self, key: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        # nginx flags are "on"/"off"; accept them so lines port verbatim.
        if isinstance(value, str) and value.strip().lower() in self._WORDS:
            return self._WORDS[value.strip().lower()]
        raise ConfigError(key, f'expected true/false (or "on"/"off"), got {value!r}')


class _Int(_Validator):
    def __init__(self, minimum: int = 0, optional: bool = False) -> None:
        self.minimum = minimum
        self.optional = optional
        self.kind = "int" + (" > 0" if minimum == 1 else f" >= {minimum}")

    def __call__(self, key: str, value: Any) -> int | None:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        if value < self.minimum:
            if self.minimum == 1:
                raise ConfigError(key, f"must be greater than zero, got {value}")
            raise ConfigError(key, f"must be at least {self.minimum}, got {value}")
        return value


class _Duration(_Validator):
    def __init__(self, positive: bool = True, optional: bool = False) -> None:
        self.positive = positive
        self.optional = optional
        self.kind = "duration" + (" > 0" if positive else "")

    def __call__(self, key: str, value: Any) -> float | None:
        if value is None and self.optional:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if self.positive and seconds <= 0:
            raise ConfigError(key, f"must be greater than zero, got {value!r}")
        return seconds


class _Size(_Validator):
    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum
        self.kind = "size" + (" > 0" if minimum else "")

    def __call__(self, key: str, value: Any) -> int:
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if size < self.minimum:
            raise ConfigError(key, f"must be greater than zero, got {value!r}")
        return size


class _SharedMemorySize(_Size):
    kind = "size > 0"

    def __call__(self, key: str, value: Any) -> int:
        # `push_stream_shared_memory_size 32m zone_name`: fastpush has one store
        # per server, so the optional zone name is accepted and ignored.
        if isinstance(value, str) and len(value.split()) == 2:
            value = value.split()[0]
        return super().__call__(key, value)


class _Str(_Validator):
    def __init__(
        self,
        nonblank: bool = False,
        optional: bool = False,
        choices: tuple[str, ...] = (),
        kind: str = "string",
    ) -> None:
        self.nonblank = nonblank
        self.optional = optional
        self.choices = choices
        self.kind = kind if not choices else " | ".join(f'"{c}"' for c in choices)

    def __call__(self, key: str, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        if self.choices:
            value = value.strip().lower()
            if value not in self.choices:
                raise ConfigError(
                    key,
                    f"invalid value {value!r}; expected one of {list(self.choices)}",
                )
        if self.nonblank and not value.strip():
            raise ConfigError(key, "cannot be blank")
        return value


class _StrList(_Validator):
    kind = "list of strings"

    def __call__(self, key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value
        ):
            raise ConfigError(key, f"expected {self.kind}, got {value!r}")
        return tuple(value)


class _Path(_Str):
    def __call__(self, key: str, value: Any) -> str | None:
        path = super().__call__(key, value)
        if path is not None and not path.startswith("/"):
            raise ConfigError(key, f"a location path must start with '/', got {path!r}")
        return path


class _Regex(_Str):
    def __call__(self, key: str, value: Any) -> str | None:
        text = super().__call__(key, value)
        if text is not None:
            try:
                re.compile(text)
            except re.error as exc:
                raise ConfigError(key, f"invalid regular expression: {exc}") from None
        return text


class _Allow(_Validator):
    kind = 'list of IPs / CIDRs / "all"'
    _ALL = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))

    def __call__(self, key: str, value: Any) -> tuple[IPNetwork, ...]:
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, (list, tuple)):
            raise ConfigError(key, f"expected a list of addresses, got {value!r}")
        networks: list[IPNetwork] = []
        for i, entry in enumerate(entries):
            if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                networks.append(entry)
                continue
            if not isinstance(entry, str):
                raise ConfigError(f"{key}[{i}]", f"expected a string, got {entry!r}")
            if entry.strip().lower() == "all":
                networks.extend(self._ALL)
                continue
            try:
                # strict=False: nginx accepts "10.1.2.3/8" (with a warning).
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"{key}[{i}]", f"invalid address or network {entry!r}"
                ) from None
        return tuple(dict.fromkeys(networks))


class _Padding(_Validator):
    kind = '"regex,header_min,message_min[:...]"'
    _GROUP = re.compile(r"(.+),(\d+),(\d+)", re.DOTALL)

    def __call__(self, key: str, value: Any) -> tuple[Padding, ...]:
        if isinstance(value, (list, tuple)):
            groups = list(value)
        elif isinstance(value, str):
            # push-stream separates groups with ':', so a user-agent regex cannot
            # contain one; the same holds here.
            groups = value.split(":") if value else []
        else:
            raise ConfigError(key, f"expected a string, got {value!r}")
        paddings: list[Padding] = []
        for group in groups:
            if isinstance(group, (list, tuple)) and len(group) == 3:
                agent, header_min, message_min = group
                group = f"{getattr(agent, 'pattern', agent)},{header_min},{message_min}"
            if not isinstance(group, str):
                raise ConfigError(key, f"expected a string, got {group!r}")
            match = self._GROUP.fullmatch(group)
            if match is None:
                raise ConfigError(
                    key,
                    f"padding {group!r} does not match "
                    "'user-agent-regex,header_min_size,message_min_size'",
                )
            try:
                agent_re = re.compile(match.group(1))
            except re.error as exc:
                raise ConfigError(
                    key, f"invalid user agent regex {match.group(1)!r}: {exc}"
                ) from None
            paddings.append((agent_re, int(match.group(2)), int(match.group(3))))
        return tuple(paddings)


class _Listen(_Validator):
    kind = 'list of "host:port"'

    def __call__(self, key: str, value: Any) -> list[tuple[str, int]]:
        entries = [value] if isinstance(value, (str, int)) else value
        if not isinstance(entries, (list, tuple)) or not entries:
            raise ConfigError(key, f'expected a list of "host:port", got {value!r}')
        addresses: list[tuple[str, int]] = []
        for i, entry in enumerate(entries):
            if isinstance(entry, tuple) and len(entry) == 2:
                entry = _format_listen(entry)
            try:
                address = parse_listen(entry)
            except ValueError as exc:
                raise ConfigError(f"{key}[{i}]", str(exc)) from None
            if address in addresses and address[1] != 0:
                raise ConfigError(f"{key}[{i}]", f"duplicate address {entry!r}")
            addresses.append(address)
        return addresses


class _Workers(_Validator):
    kind = 'int >= 0 | "auto"'

    def __call__(self, key: str, value: Any) -> int:
        if isinstance(value, str) and value.strip().lower() == "auto":
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                key, f'expected a number of workers or "auto", got {value!r}'
            )
        return value or os.cpu_count() or 1


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One configuration key: what the loader validates and the docs list."""

    name: str
    level: str  # "top", "http", "location" (per location only) or "both"
    validator: _Validator
    default: Any  # as written in TOML; None means unset
    help: str
    origin: str  # "push-stream", "nginx" or "fastpush"
    directive: str | None  # the nginx directive it ports, if any
    default_doc: str | None = None  # how the docs show a computed default
    note: str = ""  # what differs from nginx, for the migration table

    @property
    def kind(self) -> str:
        return self.validator.kind

    def validate(self, key: str, value: Any) -> Any:
        return self.validator(key, value)


_META = "fastpush"


def _setting(
    default: Any,
    validator: _Validator,
    help: str,
    *,
    origin: str = "push-stream",
    directive: str | None = "",
    default_doc: str | None = None,
    note: str = "",
) -> Any:
    """A dataclass field whose metadata is the key's registry entry.

    ``directive=""`` means ``push_stream_<name>``, filled in by
    :func:`_collect` once the field's name is known.
    """
    typed = validator("default", default) if default is not None else None
    spec = {
        "validator": validator,
        "default": default,
        "help": help,
        "origin": origin,
        "directive": directive,
        "default_doc": default_doc,
        "note": note,
    }
    if isinstance(typed, list):
        return field(default_factory=lambda: list(typed), metadata={_META: spec})
    return field(default=typed, metadata={_META: spec})


_OPT_DURATION = _Duration(positive=True, optional=True)
_OPT_COUNT = _Int(minimum=1, optional=True)


@dataclass(frozen=True, **_SLOTS)
class _LocationLevel:
    """Location-level keys; they may also sit in [settings] as every location's
    default (nginx inheritance), so Settings and Location both carry them."""

    channels_path: str | None = _setting(
        None,
        _Str(nonblank=True, optional=True, kind="string (variables)"),
        "Channel ids of a request, with nginx variables ($arg_id, $1..$9, "
        "$http_x_name...); subscribers join several with '/' and backtrack "
        "with '.bN'. Required for every location.",
        default_doc="required",
    )
    store_messages: bool = _setting(
        False, _Bool(), "Store published messages (backtrack, resume) (publisher)."
    )
    channel_info_on_publish: bool = _setting(
        True, _Bool(), "Answer a publish with the channel's info (publisher)."
    )
    authorized_channels_only: bool = _setting(
        False,
        _Bool(),
        "Subscribers may only join channels that have a stored message (else 403); "
        "wildcard channels are exempt.",
    )
    header_template: str = _setting(
        "",
        _Str(),
        "Text sent to a subscriber when it connects (not on long-polling timeouts).",
    )
    header_template_file: str | None = _setting(
        None,
        _Str(nonblank=True, optional=True, kind="path"),
        "File read once at load time into header_template (relative to the config "
        "file); not together with header_template in the same table.",
        note="a relative path is relative to the config file",
    )
    message_template: str = _setting(
        "~text~",
        _Str(nonblank=True),
        "How messages are rendered for subscribers: `~id~` `~text~` `~size~` "
        "`~channel~` `~time~` `~tag~` `~event-id~` `~event-type~`.",
    )
    footer_template: str = _setting(
        "", _Str(), "Text sent to a subscriber before the server closes its connection."
    )
    wildcard_channel_max_qtd: int | None = _setting(
        None,
        _OPT_COUNT,
        "Most wildcard channels one subscriber request may join; needs "
        "wildcard_channel_prefix.",
        default_doc="max_number_of_wildcard_channels",
    )
    ping_message_interval: float | None = _setting(
        None, _OPT_DURATION, "Send subscribers a ping this often; unset: no pings."
    )
    subscriber_connection_ttl: float | None = _setting(
        None,
        _OPT_DURATION,
        "Close subscriber connections after this long; unset: never.",
    )
    longpolling_connection_ttl: float | None = _setting(
        None,
        _OPT_DURATION,
        "Longest a long-polling request waits for a message before it times out.",
        default_doc="subscriber_connection_ttl",
    )
    timeout_with_body: bool = _setting(
        False,
        _Bool(),
        "On a long-polling timeout answer 200 with a timeout message, not 304 "
        "(push-stream takes it at http level only).",
        note="push-stream accepts it at http level only; fastpush per location too",
    )
    websocket_allow_publish: bool = _setting(
        False, _Bool(), "WebSocket subscribers may publish to their channels."
    )
    allow_connections_to_events_channel: bool = _setting(
        False, _Bool(), "Subscribers may join the events_channel_id channel."
    )
    last_received_message_time: str = _setting(
        "",
        _Str(kind="string (variables)"),
        "Where to read the last received message time instead of If-Modified-Since, "
        "e.g. $arg_time.",
    )
    last_received_message_tag: str = _setting(
        "",
        _Str(kind="string (variables)"),
        "Where to read the last received message tag instead of If-None-Match, "
        "e.g. $arg_tag.",
    )
    last_event_id: str = _setting(
        "",
        _Str(kind="string (variables)"),
        "Where to read the last event id instead of Last-Event-ID, "
        "e.g. $arg_last_event_id.",
    )
    user_agent: str = _setting(
        "",
        _Str(kind="string (variables)"),
        "Where to read the user agent used for padding instead of User-Agent, "
        "e.g. $arg_ua.",
    )
    padding_by_user_agent: tuple[Padding, ...] = _setting(
        "",
        _Padding(),
        "Minimum header and message sizes for matching user agents (padding).",
    )
    allowed_origins: str = _setting(
        "",
        _Str(kind="string (variables)"),
        "Access-Control-Allow-Origin value; when set, CORS headers are sent.",
    )
    allow: tuple[IPNetwork, ...] = _setting(
        [],
        _Allow(),
        'Client addresses allowed (nginx allow + deny all); empty: everybody; "all".',
        origin="nginx",
        directive="allow / deny",
        default_doc="[] (everybody)",
        note="`allow a; allow b; deny all;` becomes `allow = [a, b]`; "
        "other deny lists are not supported",
    )
    content_type: str | None = _setting(
        None,
        _Str(nonblank=True, optional=True),
        "Content-Type of responses; unset: the mode's push-stream type.",
        origin="nginx",
        directive="default_type",
        default_doc="the mode's",
    )
    client_max_body_size: int = _setting(
        "1m",
        _Size(minimum=0),
        "Largest request body accepted (413 above it); 0: no limit.",
        origin="nginx",
        directive="client_max_body_size",
    )
    client_body_buffer_size: int = _setting(
        "16k",
        _Size(),
        "Initial buffer for reading request bodies.",
        origin="nginx",
        directive="client_body_buffer_size",
    )


@dataclass(frozen=True, **_SLOTS)
class Settings(_LocationLevel):
    """The ``[settings]`` table (nginx ``http`` block), resolved and typed.

    Durations are float seconds, sizes int bytes, unset limits ``None``. It also
    holds the http-level value of every location-level key (what a location that
    does not set the key inherits).
    """

    shared_memory_size: int = _setting(
        "64m",
        _SharedMemorySize(),
        "Memory limit for stored messages (push-stream: its whole shared zone; "
        "a zone name after the size is ignored).",
        note="bounds stored messages (push-stream: the whole shared zone); "
        "an optional zone name is ignored; optional here (default 64m)",
    )
    channel_deleted_message_text: str = _setting(
        "Channel deleted", _Str(), "Text of the message sent when a channel is deleted."
    )
    ping_message_text: str = _setting(
        " ",
        _Str(),
        "Text of ping messages.",
        note='default " " as push-stream sends (its docs say none)',
    )
    channel_inactivity_time: float = _setting(
        "30s",
        _Duration(positive=False),
        "A channel with no activity for this long is removed.",
    )
    message_ttl: float = _setting(
        "30m", _Duration(), "How long a stored message is kept before it expires."
    )
    max_subscribers_per_channel: int | None = _setting(
        None, _OPT_COUNT, "Most subscribers per channel; unset: no limit."
    )
    max_messages_stored_per_channel: int | None = _setting(
        None,
        _OPT_COUNT,
        "Most stored messages per channel (oldest go); unset: no limit.",
    )
    max_channel_id_length: int | None = _setting(
        None, _OPT_COUNT, "Longest channel id (400 above it); unset: no limit."
    )
    max_number_of_channels: int | None = _setting(
        None, _OPT_COUNT, "Most channels on the server; unset: no limit."
    )
    max_number_of_wildcard_channels: int | None = _setting(
        None, _OPT_COUNT, "Most wildcard channels on the server; unset: no limit."
    )
    wildcard_channel_prefix: str = _setting(
        "", _Str(), "Channel ids starting with this are wildcard channels."
    )
    events_channel_id: str = _setting(
        "",
        _Str(),
        "Channel that receives channel_created/destroyed and client_(un)subscribed "
        "events; empty: none.",
    )
    gzip: bool = _setting(
        False, _Bool(), "Compress responses.", origin="nginx", directive="gzip"
    )
    gzip_types: tuple[str, ...] = _setting(
        ("text/html",),
        _StrList(),
        "MIME types compressed when gzip is on (text/html always is, as in nginx).",
        origin="nginx",
        directive="gzip_types",
    )
    keepalive_requests: int = _setting(
        1000,
        _Int(minimum=0),
        "Requests served on one keep-alive connection; 0 disables keep-alive.",
        origin="nginx",
        directive="keepalive_requests",
    )
    subscriber_output_buffer_limit: int = _setting(
        "256k",
        _Size(),
        "Bytes queued for a subscriber that does not read; above it the subscriber "
        "is a slow consumer and is cut off.",
        origin="fastpush",
        directive=None,
    )
    backlog: int = _setting(
        4096,
        _Int(minimum=1),
        "listen() backlog of the server sockets.",
        origin="fastpush",
        directive="listen ... backlog=",
    )
    log_level: str = _setting(
        "info",
        _Str(choices=LOG_LEVELS),
        "Log level; trace is below debug and logs the hot path.",
        origin="fastpush",
        directive="error_log ... level",
    )
    client_header_buffer_size: int = _setting(
        "8k",
        _Size(),
        "Largest request head (request line + headers); above it: 431, or 400 for "
        "the request line.",
        origin="fastpush",
        directive="large_client_header_buffers",
    )


@dataclass(frozen=True, **_SLOTS)
class Location(_LocationLevel):
    """One ``[[locations]]`` entry with every location-level key resolved.

    A key the entry does not set is inherited from ``[settings]``, else takes
    its default. Exactly one of ``path`` (prefix match) and ``regex`` is set;
    ``pattern`` is the compiled regex whose groups feed ``$1``..``$9``.
    ``channels_path`` and the other variable-bearing strings are kept raw: the
    server evaluates them per request.
    """

    path: str | None = _setting(
        None,
        _Path(nonblank=True, optional=True),
        "Prefix the request path must start with (one of path / regex).",
        origin="nginx",
        directive="location /prefix",
        default_doc="-",
    )
    regex: str | None = _setting(
        None,
        _Regex(nonblank=True, optional=True),
        "Regular expression searched in the request path (one of path / regex); "
        "its groups are $1..$9.",
        origin="nginx",
        directive="location ~ regex",
        default_doc="-",
    )
    role: str = _setting(
        None,
        _Str(choices=tuple(ROLES)),
        "What the location does.",
        directive="push_stream_publisher / _subscriber / _channels_statistics",
        default_doc="required",
    )
    mode: str = _setting(
        None,
        _Str(
            kind='publisher: "normal" | "admin"; subscriber: "streaming" | '
            '"long-polling" | "polling" | "eventsource" | "websocket"'
        ),
        "Publisher or subscriber mode (not for channels_statistics).",
        directive="push_stream_publisher <mode> / push_stream_subscriber <mode>",
        default_doc='"normal" / "streaming"',
    )
    index: int = 0
    pattern: re.Pattern[str] | None = None

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """One line for logs: ``locations[2] ~ ^/sub/(.*) subscriber streaming $1``."""
        where = f"~ {self.regex}" if self.regex is not None else str(self.path)
        mode = f" {self.mode}" if self.mode else ""
        return f"locations[{self.index}] {where} {self.role}{mode} {self.channels_path}"

    def is_allowed(self, address: str | IPAddress | None) -> bool:
        """Whether ``allow`` lets a client address in (an empty list allows all).

        IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``, as a dual-stack socket
        reports IPv4 peers) are checked as IPv4, like nginx does.
        """
        if not self.allow:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow)


def _collect(cls: type, level: str, skip: Iterable[str] = ()) -> dict[str, Setting]:
    registry: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or _META not in f.metadata:
            continue
        spec = dict(f.metadata[_META])
        if spec["directive"] == "":
            spec["directive"] = f"push_stream_{f.name}"
        registry[f.name] = Setting(name=f.name, level=level, **spec)
    return registry


_BOTH = _collect(_LocationLevel, "both")
_HTTP = _collect(Settings, "http", skip=_BOTH)
_LOCATION_ONLY = _collect(Location, "location", skip=_BOTH)

#: Every key of ``[settings]`` and ``[[locations]]``: level "http" (settings
#: only), "both" (a location key that settings may default) or "location".
SETTINGS: dict[str, Setting] = {**_HTTP, **_BOTH, **_LOCATION_ONLY}

#: The top-level keys besides the ``settings``, ``locations`` and ``glue`` tables.
TOP_LEVEL: dict[str, Setting] = {
    "listen": Setting(
        "listen",
        "top",
        _Listen(),
        ["127.0.0.1:9080"],
        'Addresses to listen on: "host:port", "[v6]:port", ":port"; the CLI '
        "--listen replaces them.",
        "nginx",
        "listen",
    ),
    "workers": Setting(
        "workers",
        "top",
        _Workers(),
        1,
        'Worker processes; 0 or "auto": one per CPU; the CLI --workers overrides it.',
        "nginx",
        "worker_processes",
    ),
}
_TABLES = ("settings", "locations", "glue")


# ---------------------------------------------------------------------------
# Config and loading
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A loaded, validated configuration; build it with :func:`load_config`."""

    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 9080)])
    workers: int = 1
    settings: Settings = field(default_factory=Settings)
    locations: list[Location] = field(default_factory=list)
    source: str | None = None
    glue: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The resolved configuration as JSON-able data (``fastpush config --show``).

        Durations are seconds, sizes bytes, unset values ``None``; regexes and
        networks are strings.
        """
        locations = []
        for loc in self.locations:
            data = {
                f.name: _jsonable(getattr(loc, f.name))
                for f in dataclasses.fields(loc)
                if f.name != "pattern"
            }
            locations.append(data)
        return {
            "source": self.source,
            "listen": [_format_listen(address) for address in self.listen],
            "workers": self.workers,
            "settings": {
                f.name: _jsonable(getattr(self.settings, f.name))
                for f in dataclasses.fields(self.settings)
            },
            "locations": locations,
            "glue": _jsonable(self.glue),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):  # TOML dates and times inside [glue]
        return value.isoformat()
    return value


# nginx spellings a ported file may use; only for "did you mean" hints.
_NGINX_HINTS = {
    "worker_processes": "workers",
    "default_type": "content_type",
    "deny": "allow",
    "location": "path",
    "large_client_header_buffers": "client_header_buffer_size",
    "push_stream_publisher": "role",
    "push_stream_subscriber": "role",
    "push_stream_channels_statistics": "role",
}


def _unknown(key: str, name: str, known: Iterable[str]) -> ConfigError:
    candidates = list(known)
    if name in _NGINX_HINTS and _NGINX_HINTS[name] in candidates:
        hint = _NGINX_HINTS[name]
    elif name.startswith("push_stream_") and name[len("push_stream_") :] in candidates:
        hint = name[len("push_stream_") :]
    else:
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = close[0] if close else ""
    return ConfigError(
        key, "unknown key" + (f"; did you mean {hint!r}?" if hint else "")
    )


def _read_table(
    table: Mapping[str, Any], prefix: str, allowed_levels: tuple[str, ...]
) -> dict[str, Any]:
    """Validate the keys one table sets; returns only what it sets, typed."""
    values: dict[str, Any] = {}
    for name, raw in table.items():
        key = f"{prefix}.{name}"
        setting = SETTINGS.get(name)
        if setting is None:
            known = [n for n, s in SETTINGS.items() if s.level in allowed_levels]
            raise _unknown(key, name, known)
        if setting.level not in allowed_levels:
            if setting.level == "http":
                raise ConfigError(key, "is an http-level setting; set it in [settings]")
            raise ConfigError(key, "is set per location, in [[locations]]")
        values[name] = setting.validate(key, raw)
    return values


def _load_header_template(values: dict[str, Any], prefix: str, base_dir: Path) -> None:
    """Replace header_template_file with the file's text, as push-stream does at
    startup; both keys in one table is an error there too."""
    if "header_template_file" not in values:
        if "header_template" in values:
            values["header_template_file"] = None
        return
    key = f"{prefix}.header_template_file"
    if "header_template" in values:
        raise ConfigError(
            key, "cannot be used together with header_template in the same table"
        )
    path = base_dir / Path(values["header_template_file"]).expanduser()
    try:
        values["header_template"] = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(key, f"cannot read {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"{str(path)!r} is not UTF-8 text") from None
    values["header_template_file"] = str(path)


_POSITIONAL = re.compile(r"\$(\d)|\$\{(\d)\}")


def _build_location(
    index: int,
    table: Any,
    http: dict[str, Any],
    settings: Settings,
    base_dir: Path,
) -> Location:
    prefix = f"locations[{index}]"
    if not isinstance(table, Mapping):
        raise ConfigError(prefix, "expected a table ([[locations]])")
    own = _read_table(table, prefix, ("both", "location"))
    _load_header_template(own, prefix, base_dir)

    if ("path" in own) == ("regex" in own):
        raise ConfigError(f"{prefix}.path", "set exactly one of path and regex")
    role = own.get("role")
    if role is None:
        raise ConfigError(f"{prefix}.role", f"is required; one of {list(ROLES)}")
    modes = ROLES[role]
    mode = own.get("mode")
    if role == "channels_statistics":
        if mode:  # "" is the empty mode push-stream accepts
            raise ConfigError(
                f"{prefix}.mode", "is not allowed for channels_statistics"
            )
        mode = ""
    else:
        mode = (mode or modes[0]).strip().lower()
        if mode not in modes:
            raise ConfigError(
                f"{prefix}.mode",
                f"invalid {role} mode {mode!r}; expected one of {list(modes)}",
            )

    # nginx inheritance: the location's own value, else [settings]', else the
    # default (already folded into `settings`).
    # (header_template and header_template_file travel as a pair: see
    # _load_header_template).
    merged = {name: getattr(settings, name) for name in _BOTH}
    merged.update({k: v for k, v in own.items() if k in _BOTH})
    lp_ttl = "longpolling_connection_ttl"
    if lp_ttl not in own and lp_ttl not in http:
        # push-stream: "default: value in push_stream_subscriber_connection_ttl",
        # the location's own, inherited or not.
        merged[lp_ttl] = merged["subscriber_connection_ttl"]
    if "wildcard_channel_max_qtd" in own:
        _check_wildcard_qtd(f"{prefix}.wildcard_channel_max_qtd", merged, settings)

    channels_path = merged["channels_path"]
    if channels_path is None:
        raise ConfigError(f"{prefix}.channels_path", "is required")
    pattern = re.compile(own["regex"]) if "regex" in own else None
    groups = pattern.groups if pattern is not None else 0
    for match in _POSITIONAL.finditer(channels_path):
        number = int(match.group(1) or match.group(2))
        if number > groups:
            raise ConfigError(
                f"{prefix}.channels_path",
                f"uses ${number} but the location has {groups} regex group(s)",
            )
    return Location(
        path=own.get("path"),
        regex=own.get("regex"),
        role=role,
        mode=mode,
        index=index,
        pattern=pattern,
        **merged,
    )


def _check_wildcard_qtd(
    key: str, values: Mapping[str, Any], settings: Settings
) -> None:
    qtd = values["wildcard_channel_max_qtd"]
    if qtd is None:
        return
    if not settings.wildcard_channel_prefix:
        raise ConfigError(key, "requires settings.wildcard_channel_prefix to be set")
    limit = settings.max_number_of_wildcard_channels
    if limit is not None and qtd > limit:
        raise ConfigError(
            key, f"{qtd} is more than max_number_of_wildcard_channels ({limit})"
        )


def _build_settings(http: dict[str, Any]) -> Settings:
    values = dict(http)
    if "longpolling_connection_ttl" not in values:
        values["longpolling_connection_ttl"] = values.get("subscriber_connection_ttl")
    if "wildcard_channel_max_qtd" not in values:
        values["wildcard_channel_max_qtd"] = values.get(
            "max_number_of_wildcard_channels"
        )
    settings = Settings(**values)
    # push-stream rejects a wildcard quota (its own, or the server-wide limit
    # it defaults to) without a wildcard prefix: no channel could use it.
    explicit = "wildcard_channel_max_qtd" in http
    _check_wildcard_qtd(
        "settings."
        + (
            "wildcard_channel_max_qtd"
            if explicit
            else "max_number_of_wildcard_channels"
        ),
        {"wildcard_channel_max_qtd": settings.wildcard_channel_max_qtd},
        settings,
    )
    return settings


def config_from_mapping(
    data: Mapping[str, Any],
    *,
    source: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    listen: list[str] | None = None,
    workers: int | str | None = None,
) -> Config:
    """Build a :class:`Config` from already-parsed TOML data (or a dict in tests).

    ``base_dir`` anchors relative ``header_template_file`` paths (default: the
    current directory). A file without ``[[locations]]`` gets the default
    locations of :data:`DEFAULT_CONFIG_TOML`; ``locations = []`` means none.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("config", "expected a table at the top level")
    for name in data:
        if name in TOP_LEVEL or name in _TABLES:
            continue
        if name in SETTINGS:
            raise ConfigError(name, "unknown top-level key; put it under [settings]")
        raise _unknown(name, name, [*TOP_LEVEL, *_TABLES])
    root = Path(base_dir) if base_dir is not None else Path.cwd()

    http_table = data.get("settings", {})
    if not isinstance(http_table, Mapping):
        raise ConfigError("settings", "expected a table ([settings])")
    http = _read_table(http_table, "settings", ("http", "both"))
    _load_header_template(http, "settings", root)
    settings = _build_settings(http)

    if "locations" in data:
        tables = data["locations"]
        if not isinstance(tables, list):
            raise ConfigError(
                "locations", "expected an array of tables ([[locations]])"
            )
    else:
        tables = tomllib.loads(DEFAULT_CONFIG_TOML)["locations"]
    locations = [
        _build_location(i, table, http, settings, root)
        for i, table in enumerate(tables)
    ]

    glue = data.get("glue", {})
    if not isinstance(glue, Mapping):
        raise ConfigError("glue", "expected a table ([glue])")

    if listen is not None:
        addresses = TOP_LEVEL["listen"].validate("listen", listen)
    else:
        raw = data.get("listen", TOP_LEVEL["listen"].default)
        addresses = TOP_LEVEL["listen"].validate("listen", raw)
    raw_workers = workers if workers is not None else data.get("workers", 1)
    return Config(
        listen=addresses,
        workers=TOP_LEVEL["workers"].validate("workers", raw_workers),
        settings=settings,
        locations=locations,
        source=source,
        glue=_deepcopy_table(glue),
    )


def _deepcopy_table(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy_table(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy_table(v) for v in value]
    return value


def parse_config(
    text: str,
    *,
    source: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    listen: list[str] | None = None,
    workers: int | str | None = None,
) -> Config:
    """Load a configuration from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = f"{source}: " if source else ""
        raise ConfigError("config", f"{where}invalid TOML: {exc}") from None
    return config_from_mapping(
        data, source=source, base_dir=base_dir, listen=listen, workers=workers
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    listen: list[str] | None = None,
    workers: int | str | None = None,
) -> Config:
    """Load the config file at ``path``, or the defaults when ``path`` is None.

    ``listen`` and ``workers`` come from the command line and override the file.
    """
    if path is None:
        return parse_config(DEFAULT_CONFIG_TOML, listen=listen, workers=workers)
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(
            "config", f"cannot read {str(file)!r}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("config", f"{str(file)!r} is not UTF-8 text") from None
    return parse_config(
        text,
        source=str(file),
        base_dir=file.resolve().parent,
        listen=listen,
        workers=workers,
    )


def default_config() -> Config:
    """What ``fastpush serve`` runs without a config file."""
    return parse_config(DEFAULT_CONFIG_TOML)


DEFAULT_CONFIG_TOML = """\
# fastpush's built-in configuration: what `fastpush serve` runs without a file.
listen = ["127.0.0.1:9080"]
workers = 1

[settings]
# Keep the last messages of each channel so backtrack (/sub/ch.b5), Last-Event-ID
# and If-Modified-Since work out of the box (push-stream's default is off).
store_messages = true
max_messages_stored_per_channel = 100
message_ttl = "30m"
message_template = "~text~"

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
allow = ["127.0.0.1", "::1"]

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"
allow = ["127.0.0.1", "::1"]

[[locations]]
regex = "^/sub/(.*)"
role = "subscriber"
mode = "streaming"
channels_path = "$1"

[[locations]]
regex = "^/ev/(.*)"
role = "subscriber"
mode = "eventsource"
channels_path = "$1"

[[locations]]
regex = "^/lp/(.*)"
role = "subscriber"
mode = "long-polling"
channels_path = "$1"

[[locations]]
regex = "^/ws/(.*)"
role = "subscriber"
mode = "websocket"
channels_path = "$1"
"""


# ---------------------------------------------------------------------------
# reference documentation, generated from the registry
# ---------------------------------------------------------------------------

# push-stream directives that are not one key each; rows of the migration table.
# (directive, fastpush key, where, note)
_MIGRATION_EXTRA: tuple[tuple[str, str, str, str], ...] = (
    ("listen", "listen", "top level", "address and port only; no listen options"),
    ("worker_processes", "workers", "top level", '"auto" works'),
    ("location /prefix", "path", "[[locations]]", "prefix match"),
    (
        "location ~ regex",
        "regex",
        "[[locations]]",
        "groups feed $1..$9; `~*` (caseless): write `(?i)` in the regex",
    ),
    (
        "push_stream_publisher [normal|admin]",
        'role = "publisher"` + `mode',
        "[[locations]]",
        "",
    ),
    (
        "push_stream_subscriber [mode]",
        'role = "subscriber"` + `mode',
        "[[locations]]",
        "",
    ),
    (
        "push_stream_channels_statistics",
        'role = "channels_statistics"',
        "[[locations]]",
        "see *Statistics output formats* below",
    ),
)


def _literal(value: Any) -> str:
    """A default as the TOML a user would write, in a code span."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(rows: Iterable[Setting], with_origin: bool) -> list[str]:
    head = "| key | type | default | " + ("origin | " if with_origin else "")
    lines = [head + "description |", "|---" * (head.count("|")) + "|"]
    for s in rows:
        default = s.default_doc if s.default_doc is not None else _literal(s.default)
        origin = f"{s.origin} | " if with_origin else ""
        lines.append(
            f"| `{s.name}` | {_cell(s.kind)} | {_cell(default)} | {origin}"
            f"{_cell(s.help)} |"
        )
    return lines


def render_reference_markdown() -> str:
    """The generated part of ``docs/configuration.md``.

    ``python -m fastpush.config docs/configuration.md`` rewrites it in place;
    a test fails when the committed file is stale.
    """
    out = ["## Top-level keys", ""]
    out += _table(TOP_LEVEL.values(), with_origin=False)
    out += [
        "",
        "Tables: `[settings]` (the nginx http block), `[[locations]]` (in order) "
        "and `[glue]` (carried as-is for the glue pipeline, documented there).",
        "",
        "## `[settings]`: http-level keys",
        "",
        "These are valid only in `[settings]`.",
        "",
    ]
    out += _table(_HTTP.values(), with_origin=True)
    out += [
        "",
        "## Location keys",
        "",
        "Set per `[[locations]]` entry. Each may also be set in `[settings]`, where "
        "it becomes the default of every location that does not set it (nginx "
        "inheritance).",
        "",
    ]
    out += _table(_BOTH.values(), with_origin=True)
    out += [
        "",
        "## Location-only keys",
        "",
        "Valid only in a `[[locations]]` entry.",
        "",
    ]
    out += _table(_LOCATION_ONLY.values(), with_origin=False)
    out += [
        "",
        "## Migration from nginx",
        "",
        "Every `push_stream_*` directive of push-stream 0.6 and the nginx "
        "directives its setups use. *fastpush-only* keys have no directive.",
        "",
        "| nginx directive | fastpush key | where | notes |",
        "|---|---|---|---|",
    ]
    rows = list(_MIGRATION_EXTRA)
    for s in SETTINGS.values():
        if s.directive is None or s.level == "location":
            continue
        where = "[settings]" if s.level == "http" else "[settings] or [[locations]]"
        rows.append((s.directive, s.name, where, s.note))
    for directive, key, where, note in rows:
        where = " or ".join(f"`{w}`" if "[" in w else w for w in where.split(" or "))
        out.append(f"| `{_cell(directive)}` | `{key}` | {where} | {note} |")
    fastpush_only = [s.name for s in SETTINGS.values() if s.origin == "fastpush"]
    out += ["", "fastpush-only keys: " + ", ".join(f"`{n}`" for n in fastpush_only)]
    out += [
        "",
        "## Default configuration",
        "",
        "`fastpush serve` without `--config` runs exactly this "
        "(`fastpush.config.DEFAULT_CONFIG_TOML`):",
        "",
        "```toml",
        DEFAULT_CONFIG_TOML.rstrip("\n"),
        "```",
    ]
    return "\n".join(out) + "\n"


_BEGIN = "<!-- BEGIN GENERATED: python -m fastpush.config docs/configuration.md -->"
_END = "<!-- END GENERATED -->"


def _rewrite_docs(path: str) -> None:
    text = Path(path).read_text(encoding="utf-8")
    head, sep, rest = text.partition(_BEGIN)
    _, sep2, tail = rest.partition(_END)
    if not sep or not sep2:
        raise SystemExit(f"{path}: generated-section markers not found")
    body = f"{head}{_BEGIN}\n\n{render_reference_markdown()}\n{_END}{tail}"
    Path(path).write_text(body, encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    if len(sys.argv) == 2:
        _rewrite_docs(sys.argv[1])
    else:
        sys.stdout.write(render_reference_markdown())
