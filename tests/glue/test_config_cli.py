"""The glue's settings: the [glue] table, the command line, the process."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import post, queue_at
from pushstream_stub import StubServer

from fastpush.glue import (
    GlueConfig,
    GlueConfigError,
    add_arguments,
    config_from_args,
    load_pipeline,
)
from fastpush.pipeline import DisqusPipeline, HTTPPublisher, JSONAnnonHTTPPipeline

REPO = str(Path(__file__).resolve().parents[2])


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_override_the_toml_table(tmp_path: Path) -> None:
    toml = tmp_path / "fastpush.toml"
    toml.write_text(
        "[glue]\nqueue = 'posts'\nconcurrency = 64\nretries = 7\n"
        "[glue.http]\nconnections = 2\ntimeout = 9.5\n"
        "[glue.pipeline_options]\npath = '/tmp/x'\n"
    )
    cfg = config_from_args(
        parse("--config", str(toml), "--concurrency", "32", "--http-connections", "3")
    )
    assert (cfg.queue, cfg.concurrency, cfg.retries) == ("posts", 32, 7)
    assert (cfg.http_connections, cfg.http_timeout) == (3, 9.5)
    assert cfg.pipeline_options == {"path": "/tmp/x"}
    cfg = config_from_args(parse("-o", "n=3", "-o", "name=x", "--no-claim-notice"))
    assert cfg.pipeline_options == {"n": 3, "name": "x"}
    assert cfg.claim_notice is False


@pytest.mark.parametrize(
    "table, why",
    [
        ({"queu": "x"}, "unknown"),
        ({"on_failure": "retry"}, "on_failure"),
        ({"concurrency": 0}, "concurrency"),
        ({"retries": -1}, "retries"),
        ({"lease": "long"}, "lease"),
        ({"batch": 5000}, "batch"),
    ],
)
def test_bad_settings_are_refused(table: dict[str, Any], why: str) -> None:
    with pytest.raises(GlueConfigError, match=why):
        GlueConfig.from_mapping(table)


def test_workers_and_batch_follow_concurrency() -> None:
    cfg = GlueConfig.from_mapping({"concurrency": 256, "batch": 64})
    assert cfg.workers == 4
    cfg = GlueConfig.from_mapping({"concurrency": 10, "batch": 64})
    assert (cfg.batch, cfg.workers) == (10, 1)


def test_pipelines_load_by_name_with_their_publisher() -> None:
    async def publish(channel: str, body: bytes, *a: Any) -> None:
        pass

    default = load_pipeline(GlueConfig())
    assert isinstance(default, DisqusPipeline)
    assert isinstance(default.publisher, HTTPPublisher)
    assert default.publisher.url == "http://127.0.0.1:9080/pub"
    inside = load_pipeline(GlueConfig(), publish)
    assert type(inside.publisher).__name__ == "InProcessPublisher"
    # An explicit publish_url wins over the in-process publisher.
    explicit = load_pipeline(GlueConfig(publish_url="http://h:1/pub"), publish)
    assert isinstance(explicit.publisher, HTTPPublisher)
    named = load_pipeline(
        GlueConfig(
            pipeline="fastpush.pipeline:JSONAnnonHTTPPipeline",
            publish_url="http://h:2/pub",
            http_connections=2,
        )
    )
    assert isinstance(named, JSONAnnonHTTPPipeline)
    assert isinstance(named.publisher, HTTPPublisher)
    assert (named.publisher.port, named.publisher.connections) == (2, 2)
    for bad in ("nomodule_xyz:P", "fastpush.pipeline:Nope", "fastpush.pipeline"):
        with pytest.raises(GlueConfigError):
            load_pipeline(GlueConfig(pipeline=bad))


def test_the_glue_process_runs_until_sigterm(
    redis_url: str, run: Any, tmp_path: Path
) -> None:
    async def go() -> None:
        async with (
            StubServer() as srv,
            queue_at(redis_url) as q,
            q.results() as results,
        ):
            job = await q.put(post(9))
            log = open(tmp_path / "glue.log", "wb")  # noqa: SIM115
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fastpush",
                "glue",
                "--queue",
                "posts",
                "--redis",
                redis_url,
                "--publish-url",
                srv.url,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONPATH": REPO},
            )
            log.close()
            try:
                assert (
                    await results.wait(job, timeout=20) == b'{"ok":true,"published":4}'
                )
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 10) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        text = (tmp_path / "glue.log").read_text()
        assert "glue stopped" in text and '"finished": 1' in text

    run(go())


def test_a_bad_command_line_exits_2(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "fastpush.glue", "--pipeline", "nope"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": REPO},
        timeout=30,
    )
    assert out.returncode == 2
    assert b"module:Name" in out.stderr
