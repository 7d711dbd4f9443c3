from __future__ import annotations

CONFIG = """
[settings]
shared_memory_size = "4k"
store_messages = true
message_ttl = "1s"

[[locations]]
path = "/pub"
role = "publisher"
channels_path = "$arg_id"
"""


def test_publish_past_shared_memory_size_is_refused_with_500(make_server) -> None:
    srv = make_server(CONFIG)
    statuses = [srv.request("POST", "/pub?id=big", b"x" * 1000)[0] for _ in range(6)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[-1] == 500
    status, _, body = srv.request("GET", "/pub?id=big")
    assert status == 200
    stored = int(body.split(b'"stored_messages": ')[1].split(b",")[0])
    assert 0 < stored < 6
