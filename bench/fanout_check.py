#!/usr/bin/env python3
"""Fan-out acceptance check: N subscribers on one channel, M messages, all must arrive.

Starts a server (fastpush, bench/bin/bare_server or nginx push-stream), opens
--subscribers streaming subscribers on one channel with bench/bin/loadgen, measures
the server's memory once they are all connected, publishes --messages messages
back to back (pipelined) on one keep-alive connection, and checks that every
subscriber got every message exactly once and in order. Exits 1 if any message
was lost, duplicated or reordered, or any subscriber failed.

Prints ONE JSON line on stdout (also appended to --out) and a human-readable
summary on stderr.

  python3 bench/fanout_check.py --server bare
  python3 bench/fanout_check.py --server nginx --nginx /work/scratch/nginx/sbin/nginx
  python3 bench/fanout_check.py --server fastpush --subscribers 50000 --workers 4
  python3 bench/fanout_check.py --server nginx --proto ws  # ev/lp/ws: nginx, fastpush

Profile the server while it runs (pid printed on stderr), e.g.:
  perf stat -e task-clock,context-switches,syscalls:sys_enter_sendto \
      -e syscalls:sys_enter_writev -p <server pid> -- sleep 10
  perf record -g -p <server pid> -- sleep 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import scenarios  # noqa: E402

DEFAULT_NGINX = "/work/scratch/nginx/sbin/nginx"


# subscriber location per protocol; fastpush's defaults and
# scenarios.PUSHSTREAM_BODY agree
SUB_PREFIX = {"stream": "/sub/", "ev": "/ev/", "lp": "/lp/", "ws": "/ws/"}


def make_server(
    args: argparse.Namespace, host: str, port: int, tmp: str
) -> common.Server:
    listen = f"{host}:{port}"
    log = os.path.join(tmp, "server.log")
    taskset = ["taskset", "-c", args.pin_server] if args.pin_server else []
    if args.server == "bare":
        argv = [
            common.BARE_SERVER,
            "-l",
            listen,
            "-w",
            str(args.workers),
            "-T",
            str(int(args.timeout * 3 + 600)),
        ]
        return common.Server(taskset + argv, host, port, log_path=log)
    if args.server == "nginx":
        nofile = common.raise_nofile()
        # The suite's push-stream configuration, with this script's limits.
        conf = scenarios.NGINX_HEAD.format(
            load_module="",
            dir=tmp,
            workers=args.workers,
            nofile=nofile,
            worker_connections=nofile - 100,
        ) + scenarios.PUSHSTREAM_BODY.format(
            shm=args.shm,
            host=host,
            port=port,
            reuseport=" reuseport" if args.workers > 1 else "",
            store=" push_stream_store_messages on;" if args.proto == "lp" else "",
            max_stored="",
        )
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(conf)
        argv = [
            args.nginx,
            "-p",
            tmp,
            "-e",
            os.path.join(tmp, "error.log"),
            "-c",
            "nginx.conf",
        ]
        return common.Server(taskset + argv, host, port, log_path=log)
    cmd = (
        common.split_cmd(args.fastpush_cmd)
        if args.fastpush_cmd
        else common.fastpush_command()
    )
    argv = cmd + ["serve", "--listen", listen]
    if args.fastpush_config:
        argv += ["--config", os.path.abspath(args.fastpush_config)]
    if args.workers != 1:
        argv += ["--workers", str(args.workers)]
    env = dict(os.environ)
    env["PYTHONPATH"] = common.REPO_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return common.Server(
        taskset + argv, host, port, cwd=common.REPO_DIR, env=env, log_path=log
    )


def warmup(target: str, args: argparse.Namespace) -> None:
    """One small subscribe/publish round trip on another channel."""
    prefix = SUB_PREFIX[args.proto]
    subs = common.Subscribers(
        common.loadgen_argv(
            "sub",
            target,
            c=10,
            m=1,
            u=prefix + "warmup",
            P=args.proto,
            t=10,
            T=10,
            e=args.server == "nginx" and args.proto != "ws",
        )
    )
    try:
        subs.wait_ready(20)
        time.sleep(0.2)
        common.run_loadgen(
            common.loadgen_argv("pub", target, m=1, u="/pub?id=warmup", t=10), 20
        )
        subs.result(20)
    finally:
        subs.kill()
    time.sleep(0.3)


def per_sub(value_bytes: float, n: int) -> float:
    return round(value_bytes / n, 1) if n else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    common.raise_nofile()
    common.build_tools()
    if args.server == "bare" and args.proto != "stream":
        raise SystemExit("bare_server speaks streaming only (--proto stream)")
    host = "127.0.0.1"
    port = args.port or common.free_port(host)
    target = f"{host}:{port}"
    channel = args.channel
    ready_mode = args.ready
    if ready_mode == "auto":
        # nginx push-stream holds the streaming/eventsource head back until the
        # first message (no header_template here), so ask its channels-stats
        ready_mode = (
            "stats" if args.server == "nginx" and args.proto != "ws" else "head"
        )
    tmp = tempfile.mkdtemp(prefix=f"fanout-{args.server}-")
    server = make_server(args, host, port, tmp)
    subs: common.Subscribers | None = None
    try:
        k_base = common.kernel_snapshot()
        server.start(timeout=30)
        print(
            f"server {args.server} pid {server.pid} on {target} (dir {tmp})",
            file=sys.stderr,
        )
        if args.server == "fastpush" and args.workers > 1:
            # Connections made while workers still boot all go to the ones
            # already listening; at 1M on 59 workers those then pass the
            # file limit (20,000) and the rest of their share waits unserved.
            up = common.workers_up(host, port, args.workers, 120 + args.workers)
            if up < args.workers:
                raise RuntimeError(f"{up} of {args.workers} fastpush workers up")
        time.sleep(0.5)  # let workers finish starting
        if args.warmup:
            warmup(target, args)
        mem0, k0, cpu0 = server.memory(), common.kernel_snapshot(), server.cpu_seconds()

        sub_argv = common.loadgen_argv(
            "sub",
            target,
            c=args.subscribers,
            p=args.procs or None,
            u=SUB_PREFIX[args.proto] + channel,
            P=args.proto,
            m=args.messages,
            t=args.timeout,
            T=args.connect_timeout,
            L=args.timeout,
            r=args.connect_rate or None,
            A=args.per_ip,
            e=ready_mode != "head",
        )
        sub_argv = common.loadgen_wrap(sub_argv, args.pin_loadgen, args.loadgen_batch)
        t_sub = time.monotonic()
        subs = common.Subscribers(sub_argv)
        ready, failed, connect_s = subs.wait_ready(args.connect_timeout + 60)
        print(
            f"{ready} subscribers ready ({ready_mode}), {failed} failed, "
            f"in {connect_s:.2f}s",
            file=sys.stderr,
        )
        if ready_mode == "stats":
            # the head may not come before the first message: ask the server
            common.wait_subscribers(host, port, channel, ready, args.connect_timeout)
            connect_s = time.monotonic() - t_sub
        time.sleep(args.settle)  # let the server settle before measuring
        mem1, k1, cpu1 = server.memory(), common.kernel_snapshot(), server.cpu_seconds()
        mcpu1 = common.machine_cpu()
        connect_cpu = cpu1 - cpu0

        pub_argv = common.loadgen_argv(
            "pub",
            target,
            m=args.messages,
            u="/pub?id=" + channel,
            w=args.window,
            r=args.rate or None,
            s=args.size or None,
            t=args.timeout,
        )
        pub_argv = common.loadgen_wrap(pub_argv, args.pin_loadgen, args.loadgen_batch)
        pub = common.run_loadgen(pub_argv, args.timeout + 60)
        done = subs.wait_done(args.timeout + 60)
        # measured while every subscriber is still connected: no close work counted
        cpu2, mem2, mcpu2 = server.cpu_seconds(), server.memory(), common.machine_cpu()
        subs.stop()
        sub = subs.result(120)
        alive = server.alive()
    finally:
        if subs is not None:
            subs.kill()
        server.stop()
    if not args.keep_dir:
        shutil.rmtree(tmp, ignore_errors=True)

    n = sub["ready"]
    kern = common.kernel_delta(k0, k1)
    span_s = (
        (sub["t_last_msg_us"] - pub["t_first_send_us"]) / 1e6
        if sub["t_last_msg_us"]
        else 0
    )
    deliveries = sub["msgs"]
    pub_cpu = cpu2 - cpu1
    ok = (
        sub["ready"] == args.subscribers
        and sub["failed"] == 0
        and sub["complete"] == n
        and sub["missing"] == 0
        and sub["gaps"] == 0
        and sub["ooo"] == 0
        and sub["http_errors"] == 0
        and sub["protocol_errors"] == 0
        and sub["closed"] == 0
        and pub["acked"] == args.messages
        and pub["errors"] == 0
        and done == "complete"
        and alive
    )
    return {
        "bench": "fanout_check",
        "ok": ok,
        "server": args.server,
        "workers": args.workers,
        "proto": args.proto,
        "subscribers": args.subscribers,
        "messages": args.messages,
        "size": args.size,
        "ready": n,
        "ready_mode": ready_mode,
        "failed": sub["failed"],
        "complete": sub["complete"],
        "deliveries": deliveries,
        "expected_deliveries": args.subscribers * args.messages,
        "missing": sub["missing"],
        "gaps": sub["gaps"],
        "ooo": sub["ooo"],
        "connect_s": round(connect_s, 3),
        "first_publish_to_last_delivery_s": round(span_s, 4),
        "deliveries_per_s": round(deliveries / span_s) if span_s > 0 else 0,
        "publish_s": pub["elapsed_s"],
        "pub_per_s": pub["pub_per_s"],
        "lat_us": sub["lat_us"],
        "server_mem": {
            "pss_idle_kb": mem0["pss_kb"],
            "pss_connected_kb": mem1["pss_kb"],
            "pss_after_kb": mem2["pss_kb"],
            "rss_connected_kb": mem1["rss_kb"],
            "private_per_sub_bytes": per_sub(
                (mem1["private_kb"] - mem0["private_kb"]) * 1024, n
            ),
            "pss_per_sub_bytes": per_sub((mem1["pss_kb"] - mem0["pss_kb"]) * 1024, n),
            "rss_per_sub_bytes": per_sub((mem1["rss_kb"] - mem0["rss_kb"]) * 1024, n),
            "nprocs": mem1["nprocs"],
        },
        "kernel_mem": {
            "per_sub_bytes": per_sub(kern["kernel_bytes"], n),
            "sock_mem_bytes": kern["sock_mem_bytes"],
            "slab_bytes": kern["slab_bytes"],
            "slab_source": kern["slab_source"],
            "slab_caches": kern["slab_caches"],
            "tcp_inuse_delta": kern["tcp_inuse"],
            "note": "both socket ends plus loadgen's epoll/file objects",
        },
        "server_cpu": {
            "connect_s": round(connect_cpu, 3),
            "publish_s": round(pub_cpu, 3),
            "us_per_delivery": round(pub_cpu * 1e6 / deliveries, 3)
            if deliveries
            else None,
        },
        "loadgen_cpu": {
            "sub_s": sub["cpu_s"],
            "pub_s": pub["cpu_s"],
            "sub_procs": sub["procs"],
        },
        # whole machine over the same interval as server_cpu.publish_s (includes
        # ksoftirqd's loopback work, which no benchmark process is charged for)
        "machine_cpu": {
            k: v
            for k, v in common.cpu_delta(mcpu1, mcpu2).items()
            if k in ("busy_s", "user_s", "system_s", "softirq_s", "idle_s")
        },
        "elapsed_s": round(time.monotonic() - t_sub, 3),
        "flags": {k: v for k, v in vars(args).items()},
        "machine": common.machine_info(),
        "loadgen_sub": sub,
        "loadgen_pub": pub,
        "kernel_idle": {"tcp_inuse": k_base["sockstat"].get("inuse", 0)},
    }


def _listen_note(r: dict[str, Any]) -> str:
    k = r.get("kernel_mem", {})
    n, drops = k.get("listen_overflows", 0), k.get("listen_drops", 0)
    return f", accept queues overflowed {n} times ({drops} drops)" if drops else ""


def summary(r: dict[str, Any]) -> str:
    lat, mem, kern, cpu = r["lat_us"], r["server_mem"], r["kernel_mem"], r["server_cpu"]
    lg, mc = r["loadgen_cpu"], r["machine_cpu"]
    verdict = "OK" if r["ok"] else "FAILED"
    span = r["first_publish_to_last_delivery_s"]
    return "\n".join(
        [
            f"fanout_check {r['server']} (workers {r['workers']}, {r['proto']}): "
            + verdict,
            f"  subscribers  {r['ready']}/{r['subscribers']} ready in "
            f"{r['connect_s']} s, {r['failed']} failed, {r['complete']} complete"
            + _listen_note(r),
            f"  deliveries   {r['deliveries']}/{r['expected_deliveries']}  missing "
            f"{r['missing']} gaps {r['gaps']} out-of-order {r['ooo']}",
            f"  time         first publish -> last delivery {span} s "
            f"({r['deliveries_per_s']:,} deliveries/s; "
            f"publisher {r['pub_per_s']:,.0f} msg/s)",
            f"  latency us   p50 {lat['p50']:,}  p99 {lat['p99']:,}  "
            f"max {lat['max']:,}",
            f"  server mem   {mem['pss_per_sub_bytes']:,.0f} B/subscriber PSS "
            f"({mem['pss_idle_kb']:,} -> {mem['pss_connected_kb']:,} kB), "
            f"{mem['private_per_sub_bytes']:,.0f} B private, "
            f"{mem['nprocs']} procs; kernel {kern['per_sub_bytes']:,.0f} "
            f"B/subscriber ({kern['slab_source']})",
            f"  server cpu   {cpu['publish_s']} s for the fan-out "
            f"({cpu['us_per_delivery']} us/delivery), {cpu['connect_s']} s to accept",
            f"  loadgen cpu  sub {lg['sub_s']} s over {lg['sub_procs']} procs, "
            f"pub {lg['pub_s']} s",
            f"  machine cpu  busy {mc['busy_s']} s (softirq {mc['softirq_s']} s), "
            f"idle {mc['idle_s']} s during the fan-out",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--server", choices=("fastpush", "bare", "nginx"), default="fastpush"
    )
    ap.add_argument(
        "--nginx", default=DEFAULT_NGINX, help="nginx binary with push-stream"
    )
    ap.add_argument(
        "--fastpush-cmd",
        default="",
        help="command that runs the fastpush CLI (default: fastpush, "
        "else python -m fastpush)",
    )
    ap.add_argument(
        "--fastpush-config",
        default="",
        help="TOML file for fastpush serve --config (--listen still overrides)",
    )
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--subscribers", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument(
        "--size", type=int, default=0, help="message body bytes (0: marker only)"
    )
    ap.add_argument("--window", type=int, default=100, help="publishes in flight")
    ap.add_argument(
        "--rate", type=float, default=0, help="publishes/s (0: back to back)"
    )
    ap.add_argument("--proto", choices=tuple(SUB_PREFIX), default="stream")
    ap.add_argument("--channel", default="fanout")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--procs", type=int, default=0, help="loadgen subscriber processes")
    ap.add_argument(
        "--per-ip", type=int, default=1000, help="subscribers per source address"
    )
    ap.add_argument(
        "--connect-rate", type=float, default=0, help="connects/s (0: unlimited)"
    )
    ap.add_argument("--connect-timeout", type=float, default=300)
    ap.add_argument(
        "--timeout", type=float, default=120, help="limit for the message phase"
    )
    ap.add_argument(
        "--ready",
        choices=("auto", "head", "sent", "stats"),
        default="auto",
        help="when subscribers count as connected: response head received, "
        "request sent, or request sent and /channels-stats agrees "
        "(auto: stats for nginx, head otherwise)",
    )
    ap.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the 10-subscriber round trip on another channel that runs "
        "before the idle memory is taken (so lazy first-request setup is not "
        "charged to the subscribers)",
    )
    ap.add_argument(
        "--settle", type=float, default=1.0, help="seconds before measuring memory"
    )
    ap.add_argument(
        "--shm", default="256m", help="nginx push_stream_shared_memory_size"
    )
    ap.add_argument("--pin-server", default="", help="taskset CPU list for the server")
    ap.add_argument("--pin-loadgen", default="", help="taskset CPU list for loadgen")
    ap.add_argument(
        "--loadgen-batch", action="store_true", help="run loadgen under SCHED_BATCH"
    )
    ap.add_argument(
        "--keep-dir", action="store_true", help="keep the server's temp dir"
    )
    ap.add_argument("--out", default="", help="also append the JSON line to this file")
    args = ap.parse_args(argv)
    if args.server == "nginx" and not os.access(args.nginx, os.X_OK):
        ap.error(f"no nginx binary at {args.nginx}")
    r = run(args)
    line = json.dumps(r, separators=(",", ":"))
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    print(summary(r), file=sys.stderr)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
