from __future__ import annotations

import asyncio
import time

import pytest

from fastpush._core import Hub
from fastpush.config import parse_config
from fastpush.registry import Registry


@pytest.fixture
def registry() -> Registry:
    loop = asyncio.new_event_loop()
    config = parse_config(
        '[settings]\nchannel_inactivity_time = "5s"\nmessage_ttl = "10s"\n'
    )
    reg = Registry(Hub(loop), config.settings)
    reg.deliver = lambda ch, msg: None
    yield reg
    loop.close()


def test_idle_channels_are_dropped_once_inactive(registry: Registry) -> None:
    t = time.time()
    for i in range(3):
        registry.get_or_create(f"idle{i}")
    registry.collect(t + 1)
    assert len(registry.channels) == 3
    registry.collect(t + 7)
    assert registry.channels == {}


def test_stored_messages_keep_a_channel_until_they_expire(registry: Registry) -> None:
    t = time.time()
    ch = registry.get_or_create("kept")
    registry.publish(ch, b"m", store=True)
    registry.collect(t + 7)
    assert registry.get("kept") is ch and ch.stored == 1
    registry.collect(t + 12)
    assert ch.stored == 0
    assert registry.get("kept") is None


def test_collect_visits_only_due_channels(registry: Registry) -> None:
    t = time.time()
    for i in range(1000):
        registry.get_or_create(f"c{i}")
    visited = []
    real = registry._collect_one
    registry._collect_one = lambda ch, now: (visited.append(ch.id), real(ch, now))
    for step in range(1, 5):  # before the inactivity time: nothing is due
        registry.collect(t + step)
    assert visited == []
    registry.collect(t + 7)
    assert len(visited) == 1000 and registry.channels == {}


def test_a_busy_channel_sits_in_the_wheel_once_yet_every_message_expires(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Publishes do not schedule a channel already due earlier; the visit
    # then reschedules it for its oldest message, so none outlives its TTL.
    t0 = float(int(time.time()))
    now = [t0]
    monkeypatch.setattr("fastpush.registry.time.time", lambda: now[0])
    ch = registry.get_or_create("busy")
    registry.publish(ch, b"m1")
    now[0] = t0 + 3
    registry.publish(ch, b"m2")
    assert len(registry.wheel) == 1
    registry.collect(t0 + 6.5)
    assert [m.text for m in ch.stored_messages()] == [b"m1", b"m2"]
    registry.collect(t0 + 11.5)
    assert [m.text for m in ch.stored_messages()] == [b"m2"]
    assert registry.stored_messages == 1
    registry.collect(t0 + 14.5)
    assert ch.stored == 0 and registry.get("busy") is None
