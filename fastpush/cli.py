"""`fastpush serve` and `fastpush glue`: thin mappings onto Config."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from fastpush import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastpush", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"fastpush {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the push server")
    serve.add_argument("--config", "-c", help="TOML configuration file")
    serve.add_argument(
        "--listen",
        "-l",
        action="append",
        metavar="HOST:PORT",
        help="address to listen on (repeatable; replaces the file's listen)",
    )
    serve.add_argument("--workers", "-w", type=int, help="worker processes")
    serve.add_argument(
        "--check", action="store_true", help="validate the config and exit"
    )

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--bus-fd", type=int, required=True)
    worker.add_argument("--index", type=int, default=0)
    worker.add_argument("--workers", type=int)
    worker.add_argument("--config", "-c")
    worker.add_argument("--listen", "-l", action="append")
    # Listening sockets the supervisor bound for this worker, in the
    # configuration's order.
    worker.add_argument("--listen-fd", type=int, action="append", required=True)

    sub.add_parser(
        "selftest", help="start a server, round-trip a message through it, stop"
    )

    glue = sub.add_parser("glue", help="run the Thoonk job consumer and pipeline")
    argv = sys.argv[1:] if argv is None else argv
    glue_mod: ModuleType | None = None
    if "glue" in argv:
        # Only then: the glue pulls in redis and the pipeline, megabytes a
        # server worker (one of up to dozens) has no use for.
        glue_mod = importlib.import_module("fastpush.glue")
        glue_mod.add_arguments(glue)

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "selftest":
        return _selftest()
    if glue_mod is None:
        print("fastpush: glue is not available", file=sys.stderr)
        return 2
    return glue_mod.run(args)


def _serve(args: argparse.Namespace) -> int:
    from fastpush.config import ConfigError, load_config

    try:
        config = load_config(args.config, listen=args.listen, workers=args.workers)
    except ConfigError as err:
        print(f"fastpush: config error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print("fastpush: configuration ok")
        return 0
    _logging(config)
    if config.workers > 1:
        from fastpush import supervisor

        return supervisor.run(config, args.config, args.listen or [])
    import uvloop

    from fastpush.server import make_sockets, serve

    try:
        sockets = make_sockets(config)
    except OSError as err:
        print(f"fastpush: cannot listen: {err}", file=sys.stderr)
        return 1
    try:
        return uvloop.run(
            serve(config, sockets, config_path=args.config, listen_args=args.listen)
        )
    except KeyboardInterrupt:
        return 0


def _worker(args: argparse.Namespace) -> int:
    """One of the supervisor's workers (not for direct use)."""
    import socket

    import uvloop

    from fastpush.config import ConfigError, load_config
    from fastpush.server import serve
    from fastpush.supervisor import WORKER_BOOT_ERROR

    try:
        config = load_config(args.config, listen=args.listen, workers=args.workers)
        sockets = [socket.socket(fileno=fd) for fd in args.listen_fd]
    except (ConfigError, OSError) as err:
        print(f"fastpush worker {args.index}: cannot start: {err}", file=sys.stderr)
        return WORKER_BOOT_ERROR
    _logging(config)
    return uvloop.run(
        serve(
            config,
            sockets,
            bus_fd=args.bus_fd,
            config_path=args.config,
            listen_args=args.listen,
        )
    )


def _logging(config: object) -> None:
    level = config.settings.log_level  # type: ignore[attr-defined]
    logging.basicConfig(
        level=level.upper() if level != "trace" else 5,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )


def _selftest() -> int:
    """What a wheel's test runs: the installed build serves a real round trip."""
    from fastpush.testing import ServerProcess

    with ServerProcess() as srv:
        status, _, _ = srv.request("POST", "/pub?id=selftest", b"hello")
        with srv.client() as sub:
            sub.send(b"GET /sub/selftest.b1 HTTP/1.1\r\nHost: x\r\n\r\n")
            head_status = sub.read_head()[0]
            got = sub.read_chunk()
    ok = status == 200 and head_status == 200 and got == b"hello"
    print("fastpush selftest: " + ("ok" if ok else f"FAILED ({status}, {got!r})"))
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
