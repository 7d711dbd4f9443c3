"""Tests for fastpush.config: the TOML contract, defaults, inheritance, errors."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import pickle
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpush.config import (
    DEFAULT_CONFIG_TOML,
    SETTINGS,
    TOP_LEVEL,
    Config,
    ConfigError,
    Location,
    Settings,
    config_from_mapping,
    default_config,
    load_config,
    parse_config,
    parse_duration,
    parse_listen,
    parse_size,
    render_reference_markdown,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# A subscriber location every test file can append to [settings]-only configs.
SUB = """
[[locations]]
regex = "^/sub/(.*)"
role = "subscriber"
channels_path = "$1"
"""


def write(tmp_path: Path, text: str, name: str = "fastpush.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kwargs: Any) -> Config:
    return load_config(write(tmp_path, text), **kwargs)


def load_error(tmp_path: Path, text: str, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **kwargs)
    return info.value


# --------------------------------------------------------------------------
# defaults
# --------------------------------------------------------------------------


def test_no_path_loads_the_embedded_defaults() -> None:
    cfg = load_config()
    assert cfg == default_config()
    assert cfg.source is None
    assert cfg.listen == [("127.0.0.1", 9080)]
    assert cfg.workers == 1
    assert cfg.glue == {}


def test_default_config_stores_messages_and_sends_no_pings() -> None:
    s = default_config().settings
    assert s.store_messages is True
    assert s.max_messages_stored_per_channel == 100
    assert s.message_ttl == 30 * 60
    assert s.message_template == "~text~"
    assert s.ping_message_interval is None


def test_default_config_locations_in_order() -> None:
    locs = default_config().locations
    summary = [
        (loc.path or loc.regex, loc.role, loc.mode, loc.channels_path) for loc in locs
    ]
    assert summary == [
        ("/pub", "publisher", "admin", "$arg_id"),
        ("/channels-stats", "channels_statistics", "", "$arg_id"),
        ("^/sub/(.*)", "subscriber", "streaming", "$1"),
        ("^/ev/(.*)", "subscriber", "eventsource", "$1"),
        ("^/lp/(.*)", "subscriber", "long-polling", "$1"),
        ("^/ws/(.*)", "subscriber", "websocket", "$1"),
    ]
    assert [loc.index for loc in locs] == list(range(6))
    assert all(loc.store_messages for loc in locs)  # inherited from [settings]


def test_default_config_admin_endpoints_are_loopback_only() -> None:
    pub, stats, sub = default_config().locations[:3]
    loopback = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert pub.allow == loopback
    assert stats.allow == loopback
    assert sub.allow == ()
    assert pub.is_allowed("127.0.0.1") and not pub.is_allowed("10.1.2.3")
    assert sub.is_allowed("10.1.2.3")


def test_default_config_regex_locations_capture_the_channel() -> None:
    sub = default_config().locations[2]
    assert sub.path is None
    assert sub.pattern is not None
    match = sub.pattern.search("/sub/ch1.b5/ch2")
    assert match is not None and match.group(1) == "ch1.b5/ch2"
    assert default_config().locations[0].pattern is None


def test_default_toml_file_loads_the_same_as_default_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, DEFAULT_CONFIG_TOML)
    assert dataclasses.replace(cfg, source=None) == default_config()


def test_registry_defaults_follow_push_stream() -> None:
    s = Settings()
    assert s.channel_deleted_message_text == "Channel deleted"
    assert s.ping_message_text == " "  # what push-stream sends by default
    assert s.channel_inactivity_time == 30.0
    assert s.message_ttl == 1800.0
    assert s.store_messages is False
    assert s.channel_info_on_publish is True
    assert s.message_template == "~text~"
    assert s.header_template == "" and s.footer_template == ""
    for key in (
        "max_subscribers_per_channel",
        "max_messages_stored_per_channel",
        "max_channel_id_length",
        "max_number_of_channels",
        "max_number_of_wildcard_channels",
        "ping_message_interval",
        "subscriber_connection_ttl",
        "longpolling_connection_ttl",
        "wildcard_channel_max_qtd",
        "content_type",
    ):
        assert getattr(s, key) is None, key


def test_registry_defaults_of_nginx_and_fastpush_keys() -> None:
    s = Settings()
    assert s.gzip is False
    assert s.keepalive_requests == 1000
    assert s.client_max_body_size == 1024 * 1024
    assert s.client_body_buffer_size == 16 * 1024
    assert s.subscriber_output_buffer_limit == 256 * 1024
    assert s.backlog == 4096
    assert s.log_level == "info"
    assert s.client_header_buffer_size == 8 * 1024
    assert s.shared_memory_size == 64 * 1024 * 1024


def test_settings_only_file_keeps_push_stream_defaults(tmp_path: Path) -> None:
    # The embedded *file* turns store_messages on; a user file starts from the
    # push-stream defaults and, without [[locations]], the default locations.
    cfg = load(tmp_path, '[settings]\nping_message_interval = "10s"\n')
    assert cfg.settings.store_messages is False
    assert [loc.path or loc.regex for loc in cfg.locations] == [
        loc.path or loc.regex for loc in default_config().locations
    ]
    assert all(loc.ping_message_interval == 10.0 for loc in cfg.locations)


def test_empty_locations_array_means_no_locations(tmp_path: Path) -> None:
    assert load(tmp_path, "locations = []\n").locations == []


# --------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------

PUSH_STREAM_MAIN = {
    "shared_memory_size",
    "channel_deleted_message_text",
    "ping_message_text",
    "channel_inactivity_time",
    "message_ttl",
    "max_subscribers_per_channel",
    "max_messages_stored_per_channel",
    "max_channel_id_length",
    "max_number_of_channels",
    "max_number_of_wildcard_channels",
    "wildcard_channel_prefix",
    "events_channel_id",
}
PUSH_STREAM_LOCATION = {
    "channels_path",
    "store_messages",
    "channel_info_on_publish",
    "authorized_channels_only",
    "header_template_file",
    "header_template",
    "message_template",
    "footer_template",
    "wildcard_channel_max_qtd",
    "ping_message_interval",
    "subscriber_connection_ttl",
    "longpolling_connection_ttl",
    "timeout_with_body",
    "websocket_allow_publish",
    "last_received_message_time",
    "last_received_message_tag",
    "last_event_id",
    "user_agent",
    "padding_by_user_agent",
    "allowed_origins",
    "allow_connections_to_events_channel",
}


def test_registry_covers_every_push_stream_directive() -> None:
    levels = {name: s.level for name, s in SETTINGS.items()}
    assert {n for n in PUSH_STREAM_MAIN if levels.get(n) != "http"} == set()
    assert {n for n in PUSH_STREAM_LOCATION if levels.get(n) != "both"} == set()
    for name in PUSH_STREAM_MAIN | PUSH_STREAM_LOCATION:
        assert SETTINGS[name].directive == f"push_stream_{name}"
        assert SETTINGS[name].help


def test_registry_levels_and_dataclass_fields_agree() -> None:
    settings_fields = {f.name for f in dataclasses.fields(Settings)}
    location_fields = {f.name for f in dataclasses.fields(Location)}
    by_level: dict[str, set[str]] = {}
    for name, s in SETTINGS.items():
        by_level.setdefault(s.level, set()).add(name)
    assert settings_fields == by_level["http"] | by_level["both"]
    assert location_fields == by_level["both"] | by_level["location"] | {
        "index",
        "pattern",
    }
    assert by_level["location"] == {"path", "regex", "role", "mode"}
    assert {"subscriber_output_buffer_limit", "backlog", "log_level"} <= by_level[
        "http"
    ]
    assert set(TOP_LEVEL) == {"listen", "workers"}


def test_settings_and_locations_are_frozen() -> None:
    cfg = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.settings.message_ttl = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.locations[0].role = "subscriber"  # type: ignore[misc]


def test_config_pickles_for_worker_processes() -> None:
    cfg = default_config()
    assert pickle.loads(pickle.dumps(cfg)) == cfg


# --------------------------------------------------------------------------
# types
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("true", True),
        ("false", False),
        ('"on"', True),
        ('"off"', False),
        ('"On"', True),
    ],
)
def test_bool_accepts_toml_and_nginx_spellings(
    tmp_path: Path, literal: str, expected: bool
) -> None:
    cfg = load(tmp_path, f"[settings]\ngzip = {literal}\nstore_messages = {literal}\n")
    assert cfg.settings.gzip is expected
    assert cfg.locations[0].store_messages is expected


@pytest.mark.parametrize("literal", ['"yes please"', "1", '"1"', "[true]"])
def test_bool_rejects_other_values(tmp_path: Path, literal: str) -> None:
    err = load_error(tmp_path, f"[settings]\ngzip = {literal}\n")
    assert err.key == "settings.gzip"
    assert "true/false" in err.message


@pytest.mark.parametrize("literal", ['"100"', "1.5", "true"])
def test_int_rejects_non_integers(tmp_path: Path, literal: str) -> None:
    err = load_error(tmp_path, f"[settings]\nmax_number_of_channels = {literal}\n")
    assert err.key == "settings.max_number_of_channels"
    assert "integer" in err.message


def test_typed_values_are_resolved(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [settings]
        message_ttl = "1h30m"
        channel_inactivity_time = 45
        ping_message_interval = "500ms"
        shared_memory_size = "10m push_stream_zone"
        client_max_body_size = 0
        client_body_buffer_size = "32k"
        subscriber_output_buffer_limit = 1048576
        max_channel_id_length = 200
        log_level = "DEBUG"
        """
        + SUB,
    )
    s = cfg.settings
    assert s.message_ttl == 5400.0
    assert s.channel_inactivity_time == 45.0
    assert s.ping_message_interval == 0.5
    assert s.shared_memory_size == 10 * 1024 * 1024
    assert s.client_max_body_size == 0  # nginx: no limit
    assert s.client_body_buffer_size == 32 * 1024
    assert s.subscriber_output_buffer_limit == 1 << 20
    assert s.max_channel_id_length == 200
    assert s.log_level == "debug"


def test_string_where_number_expected_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[settings]\nmessage_ttl = true\n")
    assert err.key == "settings.message_ttl"
    err = load_error(tmp_path, '[settings]\nclient_max_body_size = "lots"\n')
    assert err.key == "settings.client_max_body_size"
    err = load_error(tmp_path, "[settings]\nmessage_template = 3\n")
    assert err.key == "settings.message_template"


def test_log_level_must_be_known(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[settings]\nlog_level = "verbose"\n')
    assert err.key == "settings.log_level"
    assert "trace" in err.message


# --------------------------------------------------------------------------
# inheritance: [settings] -> [[locations]]
# --------------------------------------------------------------------------


def test_location_inherits_settings_and_overrides_them(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [settings]
        message_template = "<script>p(~id~,'~channel~','~text~');</script>"
        ping_message_interval = "10s"
        allow = ["10.0.0.0/8"]
        content_type = "text/html"

        [[locations]]
        path = "/pub"
        role = "publisher"
        channels_path = "$arg_id"
        store_messages = true
        allow = ["127.0.0.1"]

        [[locations]]
        regex = "/sub/(.*)"
        role = "subscriber"
        channels_path = "$1"
        message_template = "~text~"
        ping_message_interval = "1s"
        """,
    )
    pub, sub = cfg.locations
    assert pub.message_template == "<script>p(~id~,'~channel~','~text~');</script>"
    assert sub.message_template == "~text~"
    assert pub.ping_message_interval == 10.0
    assert sub.ping_message_interval == 1.0
    assert pub.store_messages is True and sub.store_messages is False
    assert pub.allow == (ipaddress.ip_network("127.0.0.1/32"),)
    assert sub.allow == (ipaddress.ip_network("10.0.0.0/8"),)
    assert pub.content_type == sub.content_type == "text/html"
    assert cfg.settings.ping_message_interval == 10.0


def test_channels_path_may_be_inherited(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [settings]
        channels_path = "$arg_id"
        [[locations]]
        path = "/pub"
        role = "publisher"
        """,
    )
    assert cfg.locations[0].channels_path == "$arg_id"


def test_longpolling_ttl_defaults_to_the_locations_subscriber_ttl(
    tmp_path: Path,
) -> None:
    cfg = load(
        tmp_path,
        """
        [settings]
        subscriber_connection_ttl = "10s"
        [[locations]]
        regex = "/a/(.*)"
        role = "subscriber"
        channels_path = "$1"
        [[locations]]
        regex = "/b/(.*)"
        role = "subscriber"
        channels_path = "$1"
        subscriber_connection_ttl = "20s"
        [[locations]]
        regex = "/c/(.*)"
        role = "subscriber"
        channels_path = "$1"
        longpolling_connection_ttl = "5s"
        """,
    )
    a, b, c = cfg.locations
    assert cfg.settings.longpolling_connection_ttl == 10.0
    assert (a.subscriber_connection_ttl, a.longpolling_connection_ttl) == (10.0, 10.0)
    assert (b.subscriber_connection_ttl, b.longpolling_connection_ttl) == (20.0, 20.0)
    assert (c.subscriber_connection_ttl, c.longpolling_connection_ttl) == (10.0, 5.0)


def test_explicit_http_longpolling_ttl_is_inherited(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [settings]
        longpolling_connection_ttl = "3s"
        [[locations]]
        regex = "/lp/(.*)"
        role = "subscriber"
        mode = "long-polling"
        channels_path = "$1"
        subscriber_connection_ttl = "20s"
        """,
    )
    assert cfg.locations[0].longpolling_connection_ttl == 3.0


def test_wildcard_quota_defaults_to_the_server_limit(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [settings]
        wildcard_channel_prefix = "broad_"
        max_number_of_wildcard_channels = 5
        """
        + SUB
        + "wildcard_channel_max_qtd = 3\n"
        + SUB.replace("/sub/", "/sub2/"),
    )
    assert cfg.settings.wildcard_channel_max_qtd == 5
    assert [loc.wildcard_channel_max_qtd for loc in cfg.locations] == [3, 5]


def test_wildcard_quota_needs_a_prefix(tmp_path: Path) -> None:
    err = load_error(tmp_path, SUB + "wildcard_channel_max_qtd = 3\n")
    assert err.key == "locations[0].wildcard_channel_max_qtd"
    assert "wildcard_channel_prefix" in err.message
    err = load_error(tmp_path, "[settings]\nwildcard_channel_max_qtd = 3\n")
    assert err.key == "settings.wildcard_channel_max_qtd"


def test_wildcard_quota_cannot_exceed_the_server_limit(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        [settings]
        wildcard_channel_prefix = "broad_"
        max_number_of_wildcard_channels = 3
        """
        + SUB
        + "wildcard_channel_max_qtd = 4\n",
    )
    assert err.key == "locations[0].wildcard_channel_max_qtd"
    assert "max_number_of_wildcard_channels" in err.message


# --------------------------------------------------------------------------
# header_template_file
# --------------------------------------------------------------------------


def test_header_template_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "header.html").write_text("Header\nTemplate\ninside a file")
    path = write(
        tmp_path / "conf",
        '[settings]\nheader_template_file = "header.html"\n' + SUB,
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)  # not the config's directory
    try:
        cfg = load_config(path)
    finally:
        os.chdir(cwd)
    loc = cfg.locations[0]
    assert loc.header_template == "Header\nTemplate\ninside a file"
    assert loc.header_template_file == str(tmp_path / "conf" / "header.html")
    assert cfg.settings.header_template == loc.header_template


def test_header_template_and_file_on_one_level_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "h.txt").write_text("x")
    err = load_error(
        tmp_path, SUB + 'header_template = "inline"\nheader_template_file = "h.txt"\n'
    )
    assert err.key == "locations[0].header_template_file"
    assert "header_template" in err.message
    err = load_error(
        tmp_path,
        '[settings]\nheader_template = "a"\nheader_template_file = "h.txt"\n',
    )
    assert err.key == "settings.header_template_file"


def test_header_template_on_another_level_replaces_the_file(tmp_path: Path) -> None:
    (tmp_path / "h.txt").write_text("from file")
    cfg = load(
        tmp_path,
        '[settings]\nheader_template_file = "h.txt"\n'
        + SUB
        + 'header_template = "inline"\n'
        + SUB.replace("/sub/", "/other/"),
    )
    inline, inherited = cfg.locations
    assert (inline.header_template, inline.header_template_file) == ("inline", None)
    assert inherited.header_template == "from file"


def test_header_template_file_in_a_location_replaces_the_inherited_text(
    tmp_path: Path,
) -> None:
    (tmp_path / "h.txt").write_text("from file")
    cfg = load(
        tmp_path,
        '[settings]\nheader_template = "inline"\n'
        + SUB
        + 'header_template_file = "h.txt"\n',
    )
    assert cfg.locations[0].header_template == "from file"


def test_unreadable_header_template_file_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, SUB + 'header_template_file = "missing.html"\n')
    assert err.key == "locations[0].header_template_file"
    assert "missing.html" in err.message


# --------------------------------------------------------------------------
# padding_by_user_agent
# --------------------------------------------------------------------------


def test_padding_by_user_agent_is_parsed(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        SUB + 'padding_by_user_agent = "[T|t]est 1,1024,508:[T|t]est 2,4097,0"\n',
    )
    (agent1, header1, message1), (agent2, header2, message2) = cfg.locations[
        0
    ].padding_by_user_agent
    assert isinstance(agent1, re.Pattern)
    assert agent1.search("a test 1 agent") and not agent1.search("Test 2")
    assert (header1, message1) == (1024, 508)
    assert agent2.search("Test 2") is not None
    assert (header2, message2) == (4097, 0)


@pytest.mark.parametrize(
    "value",
    [
        "user_agent,as,df",
        "user_agent;10;0",
        "user_agent,10,0:other_user_agent;20;0:another_user_agent,30,0",
        "(unclosed,1,2",
    ],
)
def test_invalid_padding_is_an_error(tmp_path: Path, value: str) -> None:
    err = load_error(tmp_path, SUB + f"padding_by_user_agent = {json.dumps(value)}\n")
    assert err.key == "locations[0].padding_by_user_agent"


# --------------------------------------------------------------------------
# allow
# --------------------------------------------------------------------------


def test_allow_entries_are_networks(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, SUB + 'allow = ["127.0.0.1", "10.1.2.3/8", "::1", "2001:db8::/32"]\n'
    )
    loc = cfg.locations[0]
    assert loc.allow == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert loc.is_allowed("10.200.0.1")
    assert loc.is_allowed(ipaddress.ip_address("2001:db8::5"))
    assert loc.is_allowed("::ffff:127.0.0.1")  # IPv4 peer on a dual-stack socket
    assert not loc.is_allowed("192.168.1.1")
    assert not loc.is_allowed("not an address")
    assert not loc.is_allowed(None)


def test_allow_all_lets_everybody_in(tmp_path: Path) -> None:
    loc = load(tmp_path, SUB + 'allow = ["all"]\n').locations[0]
    assert loc.allow
    assert loc.is_allowed("8.8.8.8") and loc.is_allowed("2001:db8::1")


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.0/33", "1.2.3", ""])
def test_invalid_allow_entry_is_an_error(tmp_path: Path, entry: str) -> None:
    err = load_error(tmp_path, SUB + f'allow = ["127.0.0.1", "{entry}"]\n')
    assert err.key == "locations[0].allow[1]"


# --------------------------------------------------------------------------
# listen and workers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9080", ("127.0.0.1", 9080)),
        ("[::1]:9080", ("::1", 9080)),
        ("[::]:80", ("::", 80)),
        (":9080", ("0.0.0.0", 9080)),
        ("*:9080", ("0.0.0.0", 9080)),
        ("9080", ("0.0.0.0", 9080)),
        ("localhost:8000", ("localhost", 8000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "::1:9080",
        "[::1]9080",
        "[nothex]:80",
        "127.0.0.1:65536",
        "127.0.0.1",
        "a b:80",
        "unix:/tmp/s",
        "host:-1",
        "",
    ],
)
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_listen_from_file_and_cli_override(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'listen = ["127.0.0.1:8001", "[::1]:8001", 8002]\nworkers = 3\n'
    )
    cfg = load_config(path)
    assert cfg.listen == [("127.0.0.1", 8001), ("::1", 8001), ("0.0.0.0", 8002)]
    assert cfg.workers == 3
    cfg = load_config(path, listen=["127.0.0.1:9999"], workers=5)
    assert cfg.listen == [("127.0.0.1", 9999)]
    assert cfg.workers == 5
    assert load_config(None, listen=[":7000"]).listen == [("0.0.0.0", 7000)]


def test_invalid_listen_names_the_entry(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'listen = ["127.0.0.1:80", "127.0.0.1:99999"]\n')
    assert err.key == "listen[1]"
    err = load_error(tmp_path, 'listen = ["127.0.0.1:80", "127.0.0.1:80"]\n')
    assert err.key == "listen[1]" and "duplicate" in err.message
    err = load_error(tmp_path, "listen = []\n")
    assert err.key == "listen"
    with pytest.raises(ConfigError) as info:
        load_config(None, listen=["nope:port"])
    assert info.value.key == "listen[0]"


@pytest.mark.parametrize("value", ["0", '"auto"'])
def test_workers_auto_means_one_per_cpu(tmp_path: Path, value: str) -> None:
    assert load(tmp_path, f"workers = {value}\n").workers == (os.cpu_count() or 1)


@pytest.mark.parametrize("value", ["-1", '"many"', "true", "1.5"])
def test_invalid_workers(tmp_path: Path, value: str) -> None:
    assert load_error(tmp_path, f"workers = {value}\n").key == "workers"


def test_cli_workers_override_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, workers=-2)
    assert info.value.key == "workers"


# --------------------------------------------------------------------------
# roles, modes, paths
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "mode", "expected"),
    [
        ("publisher", None, "normal"),
        ("publisher", '""', "normal"),
        ("publisher", '"ADMIN"', "admin"),
        ("subscriber", None, "streaming"),
        ("subscriber", '"long-polling"', "long-polling"),
        ("subscriber", '"polling"', "polling"),
        ("subscriber", '"eventsource"', "eventsource"),
        ("subscriber", '"websocket"', "websocket"),
        ("channels_statistics", None, ""),
        ("channels_statistics", '""', ""),
    ],
)
def test_modes(tmp_path: Path, role: str, mode: str | None, expected: str) -> None:
    text = f'[[locations]]\npath = "/x"\nrole = "{role}"\nchannels_path = "$arg_id"\n'
    if mode is not None:
        text += f"mode = {mode}\n"
    assert load(tmp_path, text).locations[0].mode == expected


@pytest.mark.parametrize(
    ("body", "key", "needle"),
    [
        ('role = "subscriber"\nmode = "admin"', "locations[0].mode", "streaming"),
        ('role = "publisher"\nmode = "unknown"', "locations[0].mode", "normal"),
        (
            'role = "channels_statistics"\nmode = "normal"',
            "locations[0].mode",
            "not allowed",
        ),
        ('role = "subscribers"', "locations[0].role", "subscriber"),
        ("", "locations[0].role", "required"),
    ],
)
def test_role_and_mode_errors(tmp_path: Path, body: str, key: str, needle: str) -> None:
    err = load_error(
        tmp_path, f'[[locations]]\npath = "/x"\nchannels_path = "$arg_id"\n{body}\n'
    )
    assert err.key == key
    assert needle in err.message


def test_location_needs_exactly_one_of_path_and_regex(tmp_path: Path) -> None:
    both = (
        '[[locations]]\npath = "/a"\nregex = "/b"\nrole = "publisher"\n'
        'channels_path = "x"\n'
    )
    assert load_error(tmp_path, both).key == "locations[0].path"
    neither = '[[locations]]\nrole = "publisher"\nchannels_path = "x"\n'
    assert load_error(tmp_path, neither).key == "locations[0].path"


def test_path_must_be_absolute(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        '[[locations]]\npath = "pub"\nrole = "publisher"\nchannels_path = "x"\n',
    )
    assert err.key == "locations[0].path"


def test_invalid_regex_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, SUB.replace("^/sub/(.*)", "/sub/(.*"))
    assert err.key == "locations[0].regex"
    assert "regular expression" in err.message


def test_missing_channels_path_names_the_location(tmp_path: Path) -> None:
    text = SUB + '[[locations]]\npath = "/pub"\nrole = "publisher"\n'
    assert str(load_error(tmp_path, text)) == "locations[1].channels_path: is required"
    blank = SUB.replace('channels_path = "$1"', 'channels_path = ""')
    assert load_error(tmp_path, blank).key == "locations[0].channels_path"


def test_positional_variable_needs_a_regex_group(tmp_path: Path) -> None:
    text = '[[locations]]\npath = "/sub"\nrole = "subscriber"\nchannels_path = "$1"\n'
    err = load_error(tmp_path, text)
    assert err.key == "locations[0].channels_path"
    assert "$1" in err.message
    two = SUB.replace('channels_path = "$1"', 'channels_path = "$1/$2"')
    assert load_error(tmp_path, two).key == "locations[0].channels_path"


def test_location_describe_is_a_log_line() -> None:
    pub, _, sub = default_config().locations[:3]
    assert str(pub) == pub.describe() == "locations[0] /pub publisher admin $arg_id"
    assert "~ ^/sub/(.*)" in str(sub) and "streaming" in str(sub)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_config_error_formats_key_and_message() -> None:
    err = ConfigError("locations[2].channels_path", "is required")
    assert str(err) == "locations[2].channels_path: is required"
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.key, again.message) == (err.key, err.message)


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        (
            '[settings]\nmesage_template = "x"\n',
            "settings.mesage_template",
            "message_template",
        ),
        (
            '[settings]\npush_stream_message_ttl = "1m"\n',
            "settings.push_stream_message_ttl",
            "message_ttl",
        ),
        (SUB + 'chanels_path = "$1"\n', "locations[0].chanels_path", "channels_path"),
        (
            SUB + 'default_type = "text/plain"\n',
            "locations[0].default_type",
            "content_type",
        ),
        ("workerz = 2\n", "workerz", "workers"),
        ("worker_processes = 2\n", "worker_processes", "workers"),
    ],
)
def test_unknown_key_suggests_the_closest_name(
    tmp_path: Path, text: str, key: str, suggestion: str
) -> None:
    err = load_error(tmp_path, text)
    assert err.key == key
    assert "unknown key" in err.message
    assert repr(suggestion) in err.message


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[settings]\nzzzzzz = 1\n")
    assert (err.key, err.message) == ("settings.zzzzzz", "unknown key")


def test_setting_at_the_top_level_points_to_settings(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'message_ttl = "1m"\n')
    assert err.key == "message_ttl"
    assert "[settings]" in err.message


def test_http_key_in_a_location_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, SUB + 'message_ttl = "1m"\n')
    assert err.key == "locations[0].message_ttl"
    assert "[settings]" in err.message


def test_location_only_key_in_settings_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, '[settings]\nrole = "publisher"\n')
    assert err.key == "settings.role"


POSITIVE_SETTINGS = [
    "message_ttl",
    "max_subscribers_per_channel",
    "max_messages_stored_per_channel",
    "max_channel_id_length",
    "max_number_of_channels",
    "max_number_of_wildcard_channels",
    "shared_memory_size",
    "subscriber_output_buffer_limit",
    "backlog",
    "client_header_buffer_size",
]
POSITIVE_LOCATION = [
    "ping_message_interval",
    "subscriber_connection_ttl",
    "longpolling_connection_ttl",
    "wildcard_channel_max_qtd",
    "client_body_buffer_size",
]


@pytest.mark.parametrize("key", POSITIVE_SETTINGS + POSITIVE_LOCATION)
def test_zero_is_rejected_where_push_stream_requires_positive(
    tmp_path: Path, key: str
) -> None:
    err = load_error(tmp_path, f"[settings]\n{key} = 0\n")
    assert err.key == f"settings.{key}"
    assert "greater than zero" in err.message


@pytest.mark.parametrize("key", POSITIVE_LOCATION)
def test_zero_is_rejected_in_a_location_too(tmp_path: Path, key: str) -> None:
    err = load_error(tmp_path, SUB + f'{key} = "0"\n')
    assert err.key == f"locations[0].{key}"


@pytest.mark.parametrize("key", ["message_ttl", "ping_message_interval", "backlog"])
def test_negative_values_are_rejected(tmp_path: Path, key: str) -> None:
    assert load_error(tmp_path, f"[settings]\n{key} = -5\n").key == f"settings.{key}"


def test_zero_is_fine_where_push_stream_allows_it(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "[settings]\nchannel_inactivity_time = 0\nkeepalive_requests = 0\n"
        "client_max_body_size = 0\n",
    )
    assert cfg.settings.channel_inactivity_time == 0.0
    assert cfg.settings.keepalive_requests == 0


def test_blank_message_template_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, SUB + 'message_template = ""\n')
    assert err.key == "locations[0].message_template"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.key == "config"
    assert "nope.toml" in info.value.message


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.key == "config"


def test_invalid_toml(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[settings\nmessage_ttl = \n")
    assert err.key == "config"
    assert "invalid TOML" in err.message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('settings = "x"\n', "settings"),
        ('locations = "x"\n', "locations"),
        ("locations = [1]\n", "locations[0]"),
        ('glue = "x"\n', "glue"),
    ],
)
def test_tables_of_the_wrong_shape(tmp_path: Path, text: str, key: str) -> None:
    assert load_error(tmp_path, text).key == key


# --------------------------------------------------------------------------
# glue, as_dict, parse_config, the DESIGN example
# --------------------------------------------------------------------------


def test_glue_table_is_carried_through(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        [glue]
        queue = "thoonk"
        [glue.redis]
        url = "redis://localhost:6379/0"
        stages = ["json", "anonymise"]
        """,
    )
    assert cfg.glue == {
        "queue": "thoonk",
        "redis": {"url": "redis://localhost:6379/0", "stages": ["json", "anonymise"]},
    }


def test_as_dict_is_json_and_resolved(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "[glue]\nwhen = 1979-05-27T07:32:00Z\n"
        + SUB
        + 'padding_by_user_agent = "Test,10,20"\nallow = ["::1"]\n',
    )
    data = json.loads(json.dumps(cfg.as_dict()))
    assert data["listen"] == ["127.0.0.1:9080"]
    assert data["settings"]["message_ttl"] == 1800.0
    loc = data["locations"][0]
    assert loc["regex"] == "^/sub/(.*)"
    assert loc["padding_by_user_agent"] == [["Test", 10, 20]]
    assert loc["allow"] == ["::1/128"]
    assert "pattern" not in loc
    assert data["glue"]["when"].startswith("1979-05-27")


def test_as_dict_formats_ipv6_listen() -> None:
    cfg = load_config(None, listen=["[::1]:9080"])
    assert cfg.as_dict()["listen"] == ["[::1]:9080"]


def test_config_from_mapping_builds_test_configs() -> None:
    cfg = config_from_mapping(
        {
            "listen": ["127.0.0.1:0"],
            "settings": {"store_messages": True, "ping_message_interval": 1},
            "locations": [
                {"path": "/pub", "role": "publisher", "channels_path": "$arg_id"}
            ],
        }
    )
    assert cfg.listen == [("127.0.0.1", 0)]
    assert cfg.locations[0].store_messages is True
    assert cfg.locations[0].ping_message_interval == 1.0


def test_parse_config_reports_its_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("x = ", source="inline.toml")
    assert info.value.key == "config" and "inline.toml" in info.value.message


def test_design_md_example_loads(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        listen = ["127.0.0.1:9080"]
        workers = 2
        [settings]                 # http-level directives; "10s", "32k", true/false
        message_template = "~text~"
        ping_message_interval = "10s"
        [[locations]]              # in order, like nginx locations
        path = "/pub"              # prefix match, or: regex = "/sub/(.*)?"
        role = "publisher"         # publisher | subscriber | channels_statistics
        mode = "admin"
        channels_path = "$arg_id"
        allow = ["127.0.0.1"]      # access list (nginx allow/deny all)
        [[locations]]
        regex = "/sub/(.*)?"
        role = "subscriber"
        channels_path = "$1"
        """,
    )
    assert cfg.workers == 2
    assert [loc.role for loc in cfg.locations] == ["publisher", "subscriber"]
    assert cfg.source is not None and cfg.source.endswith("fastpush.toml")


# --------------------------------------------------------------------------
# parse_duration / parse_size
# --------------------------------------------------------------------------

UNIT_SECONDS = {
    "y": 365 * 86400,
    "M": 30 * 86400,
    "w": 7 * 86400,
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10s", 10.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("30", 30.0),
        (30, 30.0),
        (1.5, 1.5),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        ("1m30", 90.0),
        ("0", 0.0),
        (" 5s ", 5.0),
        ("1.5s", 1.5),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["", "s", "10x", "-5s", "30s1m", "1s1s", "10 s", "1.s", -1, True, None, "5 5"],
)
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@given(
    parts=st.lists(
        st.tuples(st.sampled_from(list(UNIT_SECONDS) + ["ms"]), st.integers(0, 10**6)),
        min_size=1,
        max_size=8,
        unique_by=lambda part: part[0],
    ),
    sep=st.sampled_from(["", " "]),
)
def test_compound_durations_sum_their_parts(
    parts: list[tuple[str, int]], sep: str
) -> None:
    order = list(UNIT_SECONDS) + ["ms"]
    parts.sort(key=lambda part: order.index(part[0]))
    text = sep.join(f"{n}{unit}" for unit, n in parts)
    expected = sum(n * UNIT_SECONDS[u] if u != "ms" else n / 1000 for u, n in parts)
    assert parse_duration(text) == pytest.approx(expected)


@given(st.integers(min_value=0, max_value=10**9))
def test_unitless_durations_are_seconds(n: int) -> None:
    assert parse_duration(str(n)) == parse_duration(n) == float(n)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("32k", 32768),
        ("1m", 1 << 20),
        ("1g", 1 << 30),
        ("100", 100),
        (100, 100),
        ("8K", 8192),
        ("2M", 2 << 20),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "k", "1t", "1.5k", "-1", -1, True, 1.0, "1 k"])
def test_parse_size_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["", "k", "m", "g"]))
def test_sizes_round_trip(n: int, unit: str) -> None:
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
    assert parse_size(f"{n}{unit}") == parse_size(f"{n}{unit.upper()}") == n * scale
    assert parse_size(n * scale) == n * scale


# --------------------------------------------------------------------------
# docs
# --------------------------------------------------------------------------


def test_docs_contain_the_current_generated_reference() -> None:
    # Regenerate with: python -m fastpush.config docs/configuration.md
    assert render_reference_markdown() in DOCS.read_text(encoding="utf-8")


def test_reference_lists_every_key_and_directive() -> None:
    text = render_reference_markdown()
    for name in [*SETTINGS, *TOP_LEVEL]:
        assert f"| `{name}` |" in text, name
    for name in PUSH_STREAM_MAIN | PUSH_STREAM_LOCATION:
        assert f"| `push_stream_{name}` | `{name}` |" in text, name
    for directive in (
        "push_stream_publisher",
        "push_stream_subscriber",
        "push_stream_channels_statistics",
        "worker_processes",
        "default_type",
        "allow / deny",
        "gzip",
        "keepalive_requests",
        "client_max_body_size",
        "client_body_buffer_size",
    ):
        assert f"| `{directive}" in text, directive
    assert DEFAULT_CONFIG_TOML.strip() in text
