from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastpush.testing import ServerProcess


@pytest.fixture
def make_server() -> Iterator[object]:
    """make_server(config_toml=None, **kw) -> a started ServerProcess."""
    started: list[ServerProcess] = []

    def make(config: str | None = None, **kw: object) -> ServerProcess:
        srv = ServerProcess(config, **kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.close()


@pytest.fixture
def server(make_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A server on the embedded default configuration."""
    return make_server()
