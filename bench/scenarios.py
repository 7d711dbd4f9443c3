"""Targets (the servers compared) and scenarios (what one run does) for bench/suite.py.

A *target* starts one server with the configuration every target shares for a
run (the same locations, keep-alive limit, listen backlog, workers and message
store), and says how loadgen must talk to it:

  fastpush   ``fastpush serve --config <generated TOML> --listen ...``
  nginx      nginx + push-stream 0.6 (binary from --nginx / FASTPUSH_BENCH_NGINX)
  nchan      nginx + Nchan (Debian's libnginx-mod-nchan, load_module'd)
  bare       bench/bin/bare_server, the floor (streaming only, no store)

A *cell* is one scenario with fixed parameters (e.g. fan-out, 10k streaming
subscribers on 1 channel, publishing back to back). ``run_cell`` runs it once
against one target on a fresh server and returns one result dict: the raw
loadgen output, the /proc measurements and ``metrics``, a flat dict of the
numbers the suite takes medians and ratios of (names in METRICS).

Every run is bounded: connect and message phases have limits derived from the
cell, loadgen has its own (-T, -t), and servers are killed with their process
group. Loopback only (127.0.0.1 and loadgen's 127.1.x.y source addresses).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import common

HOST = "127.0.0.1"
MODES = ("stream", "ev", "ws", "lp")
MODE_NAMES = {
    "stream": "streaming",
    "ev": "eventsource",
    "ws": "websocket",
    "lp": "long-polling",
}
# subscriber location per mode; every target's configuration uses these paths
SUB_PREFIX = {"stream": "/sub/", "ev": "/ev/", "lp": "/lp/", "ws": "/ws/"}
# subscribers one loadgen process holds (a process may open 20,000 fds here)
PER_PROC = 15000
# subscribers one server worker is given (same fd limit on the server side)
PER_WORKER = 15000
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
NCHAN_NGINX = "/usr/sbin/nginx"

Log = Callable[[str], None]


# ---------------------------------------------------------------- metrics

# name -> (label, unit, better, format); better is "higher" or "lower"
METRICS: dict[str, tuple[str, str, str, str]] = {
    "connect_per_s": ("connect rate", "subscribers/s", "higher", "{:,.0f}"),
    "mem_private_per_sub": (
        "server private memory",
        "B/subscriber",
        "lower",
        "{:,.0f}",
    ),
    "mem_pss_per_sub": ("server PSS", "B/subscriber", "lower", "{:,.0f}"),
    "kernel_per_sub": ("kernel memory", "B/subscriber", "lower", "{:,.0f}"),
    "connect_cpu_us": ("server CPU per connect", "us", "lower", "{:,.1f}"),
    "deliveries_per_s": ("deliveries/s", "1/s", "higher", "{:,.0f}"),
    "cpu_s_per_M": ("server CPU per 1M deliveries", "s", "lower", "{:,.3f}"),
    "cpu_sys_share": ("share of it in the kernel", "", "lower", "{:.0%}"),
    "lat_p50_ms": ("latency p50", "ms", "lower", "{:,.2f}"),
    "lat_p99_ms": ("latency p99", "ms", "lower", "{:,.2f}"),
    "lat_max_ms": ("latency max", "ms", "lower", "{:,.2f}"),
    "msgs_per_read": ("messages per subscriber recv()", "", "higher", "{:,.1f}"),
    "pub_per_s": ("publishes/s", "1/s", "higher", "{:,.0f}"),
    "cpu_us_per_pub": ("server CPU per publish", "us", "lower", "{:,.2f}"),
    "churn_per_s": ("churn connects/s", "1/s", "higher", "{:,.0f}"),
    "cpu_us_per_churn": (
        "server CPU per churned conn (steady deliveries included)",
        "us",
        "lower",
        "{:,.1f}",
    ),
    "mem_growth_per_churn": (
        "server memory kept per churned conn",
        "B",
        "lower",
        "{:,.1f}",
    ),
    "loadgen_cpu_s": ("loadgen CPU (sub+pub) in the phase", "s", "lower", "{:,.2f}"),
    "server_cpu_s": ("server CPU in the phase", "s", "lower", "{:,.2f}"),
    "held": ("subscribers held", "", "higher", "{:,.0f}"),
    "connect_s": ("time to connect them all", "s", "lower", "{:,.1f}"),
    "burst_s": ("first publish to last delivery", "s", "lower", "{:,.2f}"),
    "burst_p99_s": ("publish-to-subscriber p99 in the burst", "s", "lower", "{:,.2f}"),
    "mem_gib": ("server PSS, all processes", "GiB", "lower", "{:,.2f}"),
}

# The push-stream figure for the 1M burst (10 messages back to back
# to 1M subscribers on one channel), measured here with an independent
# harness; running push-stream at 1M takes ~20 GB, so the suite does not.
PUSHSTREAM_MILLION_P99_S = 54.0
# subscribers per fastpush worker in the 1M cell: under the 20,000-fd limit
MILLION_PER_WORKER = 17000


# ---------------------------------------------------------------- server configs


@dataclass
class ServerSpec:
    """What every target's configuration must agree on for one run."""

    workers: int = 1
    store: bool = False  # keep published messages (long-polling needs them)
    max_stored: int = 0  # messages kept per channel when storing (0: server default)


NGINX_HEAD = """\
{load_module}pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
events {{ worker_connections {worker_connections}; use epoll; }}
http {{
  access_log off;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  # one publisher connection carries every message: do not cut it at 1000
  keepalive_requests 100000000;
"""

PUSHSTREAM_BODY = """\
  push_stream_shared_memory_size {shm};{max_stored}
  server {{
    listen {host}:{port} backlog=65535{reuseport};
    location /pub {{
      push_stream_publisher admin; push_stream_channels_path $arg_id;{store}
    }}
    location ~ /sub/(.*) {{ push_stream_subscriber; push_stream_channels_path $1; }}
    location ~ /ev/(.*) {{
      push_stream_subscriber eventsource; push_stream_channels_path $1;
    }}
    location ~ /lp/(.*) {{
      push_stream_subscriber long-polling; push_stream_channels_path $1;
    }}
    location ~ /ws/(.*) {{
      push_stream_subscriber websocket; push_stream_channels_path $1;
    }}
    location /channels-stats {{
      push_stream_channels_statistics; push_stream_channels_path $arg_id;
    }}
  }}
}}
"""

# Nchan has no "do not store": it always keeps a short buffer per channel
# (nchan_message_buffer_length, default 10). Subscribers start at the newest
# message, as push-stream's do. Streaming is Nchan's http-chunked mode, which a
# client asks for with "TE: chunked" (see NchanTarget.sub_headers).
NCHAN_BODY = """\
  nchan_shared_memory_size 256m;{max_stored}
  server {{
    listen {host}:{port} backlog=65535{reuseport};
    location /pub {{ nchan_publisher; nchan_channel_id $arg_id; }}
    location ~ /sub/(.*) {{
      nchan_subscriber http-chunked; nchan_channel_id $1; {first}
    }}
    location ~ /ev/(.*) {{
      nchan_subscriber eventsource; nchan_channel_id $1; {first}
    }}
    location ~ /lp/(.*) {{
      nchan_subscriber longpoll; nchan_channel_id $1; {first}
    }}
    location ~ /ws/(.*) {{
      nchan_subscriber websocket; nchan_channel_id $1; {first}
    }}
    location /nchan-status {{ nchan_stub_status; }}
  }}
}}
"""

FASTPUSH_TOML = """\
# generated by bench/suite.py: the same locations as the nginx configurations
listen = ["{host}:{port}"]
workers = {workers}

[settings]
keepalive_requests = 100000000
backlog = 65535
shared_memory_size = "256m"
log_level = "warning"{max_stored}

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = {store}

[[locations]]
regex = "/sub/(.*)"
role = "subscriber"
mode = "streaming"
channels_path = "$1"

[[locations]]
regex = "/ev/(.*)"
role = "subscriber"
mode = "eventsource"
channels_path = "$1"

[[locations]]
regex = "/lp/(.*)"
role = "subscriber"
mode = "long-polling"
channels_path = "$1"

[[locations]]
regex = "/ws/(.*)"
role = "subscriber"
mode = "websocket"
channels_path = "$1"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"
"""


def _http_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> str | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=3)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        return body if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _tail(path: str, n: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace").strip().replace("\n", " | ")
    except OSError:
        return ""


class Target:
    """One server implementation under test."""

    name = ""
    label = ""
    modes: tuple[str, ...] = MODES

    def unavailable(self) -> str | None:
        """Why this target cannot run at all, or None."""
        return None

    def cannot(self, mode: str, spec: ServerSpec) -> str | None:
        """Why this target cannot run this mode/spec, or None."""
        if mode not in self.modes:
            return f"{self.label} speaks {', '.join(self.modes)} only"
        return None

    def argv(self, tmp: str, port: int, spec: ServerSpec) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def server(
        self, tmp: str, port: int, spec: ServerSpec, pin: str = ""
    ) -> common.Server:
        argv = self.argv(tmp, port, spec)
        if pin:
            argv = ["taskset", "-c", pin] + argv
        return common.Server(
            argv,
            HOST,
            port,
            cwd=common.REPO_DIR,
            env=self.env(),
            log_path=os.path.join(tmp, "server.log"),
        )

    def sub_opts(self, mode: str) -> dict[str, Any]:
        """Extra loadgen sub options: e (ready on send), H (headers)."""
        return {}

    def wait_started(self, port: int, spec: ServerSpec) -> None:
        """Return once every worker serves (the listen socket may come first)."""

    def subscribers(self, port: int) -> int | None:
        """Subscribers the server counts now (all channels), None if it cannot say."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label}


class FastpushTarget(Target):
    name, label = "fastpush", "fastpush"

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self._workers_ok: dict[int, str | None] = {}

    def unavailable(self) -> str | None:
        try:
            r = subprocess.run(
                self.cmd + ["serve", "--help"], capture_output=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"cannot run {' '.join(self.cmd)}: {e}"
        return None if r.returncode == 0 else "fastpush serve --help failed"

    def cannot(self, mode: str, spec: ServerSpec) -> str | None:
        if spec.workers > 1:
            if spec.workers not in self._workers_ok:
                self._workers_ok[spec.workers] = self._probe_workers(spec.workers)
            return self._workers_ok[spec.workers]
        return super().cannot(mode, spec)

    def _probe_workers(self, n: int) -> str | None:
        """Start fastpush with n workers once; the reason it does not work, or None."""
        tmp = tempfile.mkdtemp(prefix="suite-probe-")
        port = common.free_port(HOST)
        srv = self.server(tmp, port, ServerSpec(workers=n))
        try:
            srv.start(timeout=20)
            seen = common.workers_up(HOST, port, n, 20)
            if seen != n:
                return (
                    f"fastpush --workers {n} runs {seen} worker(s) "
                    "(per /channels-stats by_worker)"
                )
            return None
        except (RuntimeError, TimeoutError, ValueError) as e:
            log = _tail(os.path.join(tmp, "server.log"), 300)
            return f"fastpush --workers {n} does not start: {log or e}"
        finally:
            srv.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def wait_started(self, port: int, spec: ServerSpec) -> None:
        if spec.workers > 1:
            seen = common.workers_up(HOST, port, spec.workers, 20)
            if seen < spec.workers:
                raise RuntimeError(f"{seen} of {spec.workers} workers up after 20 s")

    def argv(self, tmp: str, port: int, spec: ServerSpec) -> list[str]:
        conf = os.path.join(tmp, "fastpush.toml")
        with open(conf, "w") as f:
            f.write(
                FASTPUSH_TOML.format(
                    host=HOST,
                    port=port,
                    workers=spec.workers,
                    store="true" if spec.store else "false",
                    max_stored=(
                        f"\nmax_messages_stored_per_channel = {spec.max_stored}"
                        if spec.max_stored
                        else ""
                    ),
                )
            )
        argv = self.cmd + ["serve", "--config", conf, "--listen", f"{HOST}:{port}"]
        if spec.workers != 1:
            argv += ["--workers", str(spec.workers)]
        return argv

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = common.REPO_DIR + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def subscribers(self, port: int) -> int | None:
        body = _http_get(port, "/channels-stats")
        try:
            return int(json.loads(body)["subscribers"]) if body else None
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> dict[str, Any]:
        git = subprocess.run(
            ["git", "-C", common.REPO_DIR, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return {"name": self.name, "label": self.label, "cmd": self.cmd, "git": git}


class NginxTarget(Target):
    """nginx + a module; subclasses fill in the http/server body."""

    body = ""
    module = ""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def _conf(self, tmp: str, port: int, spec: ServerSpec) -> str:
        nofile = common.raise_nofile()
        head = NGINX_HEAD.format(
            load_module=f"load_module {self.module};\n" if self.module else "",
            dir=tmp,
            workers=spec.workers,
            nofile=nofile,
            worker_connections=nofile - 100,
        )
        return head + self.body_for(port, spec)

    def body_for(self, port: int, spec: ServerSpec) -> str:
        raise NotImplementedError

    def argv(self, tmp: str, port: int, spec: ServerSpec) -> list[str]:
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(self._conf(tmp, port, spec))
        return [
            self.binary,
            "-p",
            tmp,
            "-e",
            os.path.join(tmp, "error.log"),
            "-c",
            "nginx.conf",
        ]

    def config_test(self) -> str | None:
        """nginx -t on a generated configuration: None if it loads."""
        tmp = tempfile.mkdtemp(prefix="suite-conf-")
        try:
            argv = self.argv(tmp, common.free_port(HOST), ServerSpec())
            r = subprocess.run(argv + ["-t"], capture_output=True, timeout=30)
            if r.returncode != 0:
                err = r.stderr.decode(errors="replace").strip().splitlines()
                return err[0] if err else f"nginx -t exited {r.returncode}"
            return None
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def version(self) -> str:
        try:
            r = subprocess.run([self.binary, "-V"], capture_output=True, timeout=10)
            return r.stderr.decode(errors="replace").strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "binary": self.binary,
            "version": self.version(),
            "module": self.module,
        }


class PushStreamTarget(NginxTarget):
    name, label = "nginx", "push-stream"

    def unavailable(self) -> str | None:
        if not self.binary:
            return (
                "no nginx push-stream binary given "
                "(--nginx PATH or FASTPUSH_BENCH_NGINX)"
            )
        if not os.access(self.binary, os.X_OK):
            return f"no executable nginx at {self.binary}"
        return self.config_test()

    def body_for(self, port: int, spec: ServerSpec) -> str:
        return PUSHSTREAM_BODY.format(
            shm="256m",
            host=HOST,
            port=port,
            reuseport=" reuseport" if spec.workers > 1 else "",
            store=" push_stream_store_messages on;" if spec.store else "",
            max_stored=(
                f"\n  push_stream_max_messages_stored_per_channel {spec.max_stored};"
                if spec.max_stored
                else ""
            ),
        )

    def sub_opts(self, mode: str) -> dict[str, Any]:
        # push-stream sends no streaming/eventsource head before the first
        # message (no header_template here): count a subscriber once its
        # request is sent, then ask the server how many it has registered
        return {"e": mode in ("stream", "ev")}

    def subscribers(self, port: int) -> int | None:
        body = _http_get(port, "/channels-stats")
        try:
            return int(json.loads(body)["subscribers"]) if body else None
        except (ValueError, KeyError, TypeError):
            return None


class NchanTarget(NginxTarget):
    name, label = "nchan", "Nchan"
    module = NCHAN_MODULE

    def __init__(self, binary: str, candidates: list[str]) -> None:
        super().__init__(binary)
        self.candidates = candidates
        self._why: str | None = None
        self._chosen = False

    def unavailable(self) -> str | None:
        if self._chosen:
            return self._why
        self._chosen = True
        if not os.path.exists(NCHAN_MODULE):
            self._why = (
                f"Nchan not installed ({NCHAN_MODULE} missing; "
                "apt-get install libnginx-mod-nchan nginx-light)"
            )
            return self._why
        # the module must match the nginx it is loaded into: try the given
        # binary, then the push-stream one, then Debian's
        errors = []
        for b in [self.binary] + self.candidates:
            if not b or not os.access(b, os.X_OK):
                continue
            self.binary = b
            err = self.config_test()
            if err is None:
                self._why = None
                return None
            errors.append(f"{b}: {err}")
        self._why = "Nchan module loads into no nginx here: " + "; ".join(errors)
        return self._why

    def body_for(self, port: int, spec: ServerSpec) -> str:
        return NCHAN_BODY.format(
            host=HOST,
            port=port,
            reuseport=" reuseport" if spec.workers > 1 else "",
            first="nchan_subscriber_first_message newest;",
            max_stored=(
                f"\n  nchan_message_buffer_length {spec.max_stored};"
                if spec.max_stored
                else ""
            ),
        )

    def sub_opts(self, mode: str) -> dict[str, Any]:
        return {"H": ["TE: chunked"]} if mode == "stream" else {}

    def subscribers(self, port: int) -> int | None:
        body = _http_get(port, "/nchan-status")
        m = re.search(r"^subscribers:\s*(\d+)", body or "", re.M)
        return int(m.group(1)) if m else None


class BareTarget(Target):
    name, label = "bare", "bare C"
    modes = ("stream",)

    def __init__(self, nagle: bool = False) -> None:
        # TCP_NODELAY (-d) unless nagle: fastpush sends every message when it
        # is published; with Nagle's algorithm the floor would hold a
        # subscriber's next message for the previous one's ACK and, under
        # back-to-back publishing, send several in one packet (less CPU,
        # more latency): not the same job.
        self.nagle = nagle

    def unavailable(self) -> str | None:
        if not os.access(common.BARE_SERVER, os.X_OK):
            return f"no {common.BARE_SERVER} (make -C bench)"
        return None

    def cannot(self, mode: str, spec: ServerSpec) -> str | None:
        if spec.store:
            return "bare_server stores no messages"
        return super().cannot(mode, spec)

    def argv(self, tmp: str, port: int, spec: ServerSpec) -> list[str]:
        return [
            common.BARE_SERVER,
            "-l",
            f"{HOST}:{port}",
            "-w",
            str(spec.workers),
            "-T",
            "1800",
        ] + ([] if self.nagle else ["-d"])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "binary": common.BARE_SERVER,
            "sockets": "Nagle's algorithm on (--bare-nagle)"
            if self.nagle
            else "TCP_NODELAY (-d), as fastpush's",
        }


def make_targets(
    names: list[str],
    nginx: str,
    nchan_nginx: str,
    fastpush_cmd: list[str],
    bare_nagle: bool = False,
) -> list[Target]:
    out: list[Target] = []
    for n in names:
        if n == "fastpush":
            out.append(FastpushTarget(fastpush_cmd))
        elif n == "nginx":
            out.append(PushStreamTarget(nginx))
        elif n == "nchan":
            out.append(NchanTarget(nchan_nginx, [NCHAN_NGINX, nginx]))
        elif n == "bare":
            out.append(BareTarget(bare_nagle))
        else:
            raise ValueError(f"unknown target {n!r}")
    return out


# ---------------------------------------------------------------- cells


@dataclass
class Cell:
    """One scenario with fixed parameters; run once per target per round."""

    scenario: str  # capacity | fanout | publish | churn | modes
    id: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()

    def spec(self) -> ServerSpec:
        p = self.params
        return ServerSpec(
            workers=p.get("workers", 1),
            store=p.get("store", False),
            max_stored=p.get("max_stored", 0),
        )


def workers_for(n: int) -> int:
    return max(1, math.ceil(n / PER_WORKER))


def _k(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


FANOUT_METRICS = (
    "deliveries_per_s",
    "cpu_s_per_M",
    "cpu_sys_share",
    "lat_p50_ms",
    "lat_p99_ms",
    "lat_max_ms",
    "msgs_per_read",
    "loadgen_cpu_s",
)


@dataclass
class Profile:
    """Sizes of one suite run (--quick or the full set)."""

    name: str
    capacity: tuple[int, ...]
    fanout_subs: tuple[int, ...]
    fanout_channels: tuple[int, ...]
    deliveries: int  # per back-to-back fan-out run
    paced_deliveries_per_s: int  # fan-out load of the paced runs
    paced_seconds: float
    publish_messages: int
    churn_stable: int
    churn_batch: int
    churn_hold_s: float
    churn_seconds: float
    churn_rate: float
    modes_subs: int
    modes_messages: int
    modes: tuple[str, ...]
    settle_s: float
    # fan-out cells left out of this profile, as (subs, channels, publishing)
    skip_fanout: tuple[tuple[int, int, str], ...] = ()
    # subscribers of the one-channel burst run (fastpush only, once); 0: none
    million: int = 0
    # rounds for the two targets a goal compares in a cell (fastpush and the
    # bare server for CPU, fastpush and nginx for the connect rate): run to
    # run, one server's CPU per delivery moves by 10-20% on this machine, so
    # a verdict at a 10% margin needs more than a median of 3
    goal_rounds: int = 3


PROFILES = {
    "quick": Profile(
        name="quick",
        capacity=(10000,),
        fanout_subs=(1000, 10000),
        fanout_channels=(1, 100),
        deliveries=1_000_000,
        paced_deliveries_per_s=50_000,
        paced_seconds=3,
        publish_messages=30_000,
        churn_stable=1000,
        churn_batch=1000,
        churn_hold_s=0.2,
        churn_seconds=5,
        churn_rate=50,
        modes_subs=1000,
        modes_messages=100,
        modes=("ev", "ws", "lp"),
        settle_s=0.5,
        skip_fanout=((1000, 100, "b2b"), (1000, 100, "paced"), (10000, 100, "paced")),
    ),
    "full": Profile(
        name="full",
        capacity=(10000, 50000),
        fanout_subs=(1000, 10000, 50000),
        fanout_channels=(1, 100),
        deliveries=2_000_000,
        paced_deliveries_per_s=50_000,
        paced_seconds=10,
        publish_messages=100_000,
        churn_stable=5000,
        churn_batch=2000,
        churn_hold_s=0.3,
        churn_seconds=15,
        churn_rate=50,
        modes_subs=10000,
        modes_messages=100,
        modes=MODES,
        settle_s=1.0,
        million=1_000_000,
        goal_rounds=5,
    ),
}


def build_cells(prof: Profile) -> list[Cell]:
    cells: list[Cell] = []
    for n in prof.capacity:
        cells.append(
            Cell(
                "capacity",
                f"capacity/stream/n{n}",
                f"{_k(n)} idle streaming subscribers",
                {
                    "n": n,
                    "k": 1,
                    "mode": "stream",
                    "publish": False,
                    "workers": workers_for(n),
                    "settle": max(prof.settle_s, 1.0),
                    "goal_targets": ("fastpush", "nginx"),
                    "goal_rounds": prof.goal_rounds,
                },
                (
                    "mem_private_per_sub",
                    "mem_pss_per_sub",
                    "kernel_per_sub",
                    "connect_per_s",
                    "connect_cpu_us",
                ),
            )
        )
    for pub in ("b2b", "paced"):
        for k in prof.fanout_channels:
            for n in prof.fanout_subs:
                if (n, k, pub) in prof.skip_fanout:
                    continue
                m = max(1, prof.deliveries // n)
                p: dict[str, Any] = {
                    "n": n,
                    "k": k,
                    "mode": "stream",
                    "workers": workers_for(n),
                    "settle": prof.settle_s,
                    "window": 100,
                    "goal_targets": ("fastpush", "bare"),
                    "goal_rounds": prof.goal_rounds,
                }
                if pub == "b2b":
                    p.update(messages=m, rate=0)
                    how = f"back to back, {m:,} msgs/subscriber"
                else:
                    # the same delivery load for every size: rate x n / k per s
                    rate = prof.paced_deliveries_per_s * k / n
                    m = max(1, round(rate * prof.paced_seconds / k))
                    p.update(messages=m, rate=rate)
                    how = f"paced {rate:g} msg/s, {m:,} msgs/subscriber"
                cells.append(
                    Cell(
                        "fanout",
                        f"fanout/stream/n{n}/k{k}/{pub}",
                        f"{_k(n)} subs on {k} channel{'s' if k > 1 else ''}, {how}",
                        p,
                        FANOUT_METRICS,
                    )
                )
    for w, how in ((1, "keep-alive, 1 in flight"), (100, "pipelined, 100 in flight")):
        k = 10
        cells.append(
            Cell(
                "publish",
                f"publish/w{w}",
                f"{prof.publish_messages:,} publishes, {how}, "
                f"{k} channels x 1 subscriber",
                {
                    "n": k,
                    "k": k,
                    "mode": "stream",
                    "messages": prof.publish_messages // k,
                    "window": w,
                    "rate": 0,
                    "workers": 1,
                    "settle": 0.2,
                    "procs": 1,
                },
                ("pub_per_s", "cpu_us_per_pub", "lat_p99_ms", "loadgen_cpu_s"),
            )
        )
    cells.append(
        Cell(
            "churn",
            f"churn/n{prof.churn_stable}",
            f"{_k(prof.churn_stable)} steady subs on 10 channels at "
            f"{prof.churn_rate:g} msg/s while batches of {prof.churn_batch} "
            f"connect, stay {prof.churn_hold_s:g} s and leave, "
            f"{prof.churn_seconds:g} s",
            {
                "n": prof.churn_stable,
                "k": 10,
                "mode": "stream",
                "rate": prof.churn_rate,
                "seconds": prof.churn_seconds,
                "batch": prof.churn_batch,
                "hold": prof.churn_hold_s,
                "workers": 1,
                "settle": prof.settle_s,
                "window": 100,
            },
            (
                "churn_per_s",
                "cpu_us_per_churn",
                "lat_p50_ms",
                "lat_p99_ms",
                "lat_max_ms",
                "mem_growth_per_churn",
            ),
        )
    )
    for mode in prof.modes:
        m = prof.modes_messages
        p = {
            "n": prof.modes_subs,
            "k": 1,
            "mode": mode,
            "messages": m,
            "rate": 0,
            "window": 100,
            "workers": workers_for(prof.modes_subs),
            "settle": prof.settle_s,
        }
        if mode == "lp":
            # long-polling sees only what is still stored when it polls again
            p.update(store=True, max_stored=m + 10)
        cells.append(
            Cell(
                "modes",
                f"modes/{mode}/n{prof.modes_subs}",
                f"{MODE_NAMES[mode]}: {_k(prof.modes_subs)} subs on 1 channel, "
                f"{m} msgs back to back"
                + (" (messages stored)" if mode == "lp" else ""),
                p,
                FANOUT_METRICS,
            )
        )
    if prof.million:
        n = prof.million
        cells.append(
            Cell(
                "million",
                f"million/stream/n{n}",
                f"{_k(n)} streaming subscribers on 1 channel, 10 msgs back to back "
                "(fastpush only, one round)",
                {
                    "n": n,
                    "messages": 10,
                    "workers": math.ceil(n / MILLION_PER_WORKER),
                    "only": ("fastpush",),
                    "rounds": 1,
                },
                ("held", "connect_s", "burst_s", "burst_p99_s", "mem_gib"),
            )
        )
    return cells


# ---------------------------------------------------------------- running


@dataclass
class RunCtx:
    log: Log
    verbose: bool = False
    keep_dir: bool = False
    pin_server: str = ""
    pin_loadgen: str = ""
    loadgen_batch: bool = False  # loadgen under SCHED_BATCH
    loadgen_procs: int = 0  # 0: automatic


def _procs(ctx: RunCtx, n: int, p: dict[str, Any]) -> int:
    if p.get("procs"):
        return int(p["procs"])
    if ctx.loadgen_procs:
        return max(ctx.loadgen_procs, math.ceil(n / PER_PROC))
    # two processes even when one could hold them all: on 2 cores the
    # receiving side must be able to use whatever CPU the server leaves
    return max(math.ceil(n / PER_PROC), 2 if n >= 1000 else 1)


def _lg(ctx: RunCtx, argv: list[str]) -> list[str]:
    return common.loadgen_wrap(argv, ctx.pin_loadgen, ctx.loadgen_batch)


def _tree_cpu(pid: int) -> float:
    return common.cpu_clock(common.process_tree(pid))


def _warmup(ctx: RunCtx, target: Target, hp: str, mode: str) -> None:
    """One small round trip on another channel, so lazy first-request setup
    (buffers, compiled templates, imports) is not charged to the measured run."""
    subs = common.Subscribers(
        _lg(
            ctx,
            common.loadgen_argv(
                "sub",
                hp,
                c=10,
                m=1,
                u=SUB_PREFIX[mode] + "warmup",
                P=mode,
                t=10,
                T=10,
                **target.sub_opts(mode),
            ),
        )
    )
    try:
        subs.wait_ready(20)
        time.sleep(0.15)
        common.run_loadgen(
            _lg(ctx, common.loadgen_argv("pub", hp, m=1, u="/pub?id=warmup", t=10)),
            20,
        )
        subs.result(20)
    finally:
        subs.kill()
    time.sleep(0.2)


def _wait_registered(
    target: Target, port: int, want: int, t0: float, timeout: float
) -> float | None:
    """Seconds from t0 until the server counts want subscribers (None: cannot say)."""
    deadline = time.monotonic() + timeout
    n = None
    while True:
        n = target.subscribers(port)
        if n is None:
            return None
        if n >= want:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise TimeoutError(f"server registered {n} of {want} subscribers")
        # 10k subscribers connect in ~0.2 s: a coarser step would show in the
        # connect rate (20 ms was up to 10% of it)
        time.sleep(0.002)


def _lat_ms(sub: dict[str, Any]) -> dict[str, float]:
    lat = sub.get("lat_us") or {}
    return {
        "lat_p50_ms": lat.get("p50", 0) / 1000,
        "lat_p99_ms": lat.get("p99", 0) / 1000,
        "lat_max_ms": lat.get("max", 0) / 1000,
    }


def _sub_check(sub: dict[str, Any], want_ready: int, expect: bool) -> list[str]:
    """What went wrong for a loadgen sub result (empty: all fine)."""
    bad = []
    if sub["ready"] < want_ready:
        bad.append(f"ready {sub['ready']}/{want_ready}")
    for f in ("failed", "closed", "http_errors", "protocol_errors", "gaps", "ooo"):
        if sub.get(f):
            bad.append(f"{f} {sub[f]}")
    if expect:
        if sub.get("missing"):
            bad.append(f"missing {sub['missing']}")
        if sub["complete"] < sub["ready"]:
            bad.append(f"complete {sub['complete']}/{sub['ready']}")
    if sub.get("procs_reported", sub.get("procs")) != sub.get("procs"):
        bad.append("loadgen processes lost")
    return bad


def run_cell(ctx: RunCtx, target: Target, cell: Cell) -> dict[str, Any]:
    """Run cell once against target on a fresh server."""
    if cell.scenario == "churn":
        return run_churn(ctx, target, cell)
    if cell.scenario == "million":
        return run_million(ctx, target, cell)
    return run_fanout(ctx, target, cell)


class _Run:
    """A fresh server for one run, with its temp dir, stopped on exit."""

    def __init__(self, ctx: RunCtx, target: Target, cell: Cell) -> None:
        self.ctx, self.target, self.cell = ctx, target, cell
        self.tmp = tempfile.mkdtemp(prefix=f"suite-{target.name}-")
        self.port = common.free_port(HOST)
        self.hp = f"{HOST}:{self.port}"
        self.server = target.server(self.tmp, self.port, cell.spec(), ctx.pin_server)
        self.subs: list[common.Subscribers] = []

    def __enter__(self) -> _Run:
        try:
            self.server.start(timeout=30)
            self.target.wait_started(self.port, self.cell.spec())
        except BaseException:
            self.server.stop()
            raise
        return self

    def log_tail(self) -> str:
        return _tail(os.path.join(self.tmp, "server.log")) or _tail(
            os.path.join(self.tmp, "error.log")
        )

    def __exit__(self, et: Any, e: Any, tb: Any) -> None:
        for s in self.subs:
            s.kill()
        self.server.stop()
        if et is not None and e is not None:
            tail = self.log_tail()
            if tail and isinstance(e, Exception):
                e.args = (f"{e.args[0] if e.args else e} [server log: {tail}]",)
        if not self.ctx.keep_dir:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def pids(self) -> list[int]:
        return self.server.pids()

    def connect(
        self, n: int, k: int, mode: str, expect: int, timeout: float, procs: int
    ) -> tuple[common.Subscribers, dict[str, Any]]:
        """Start n subscribers; return them once the server has them all."""
        ctx, target = self.ctx, self.target
        connect_timeout = 30 + n / 1000
        argv = common.loadgen_argv(
            "sub",
            self.hp,
            c=n,
            k=k,
            p=procs,
            u=SUB_PREFIX[mode] + "ch{}",
            P=mode,
            m=expect,
            t=timeout,
            T=connect_timeout,
            L=(timeout + 60) if expect else None,
            **target.sub_opts(mode),
        )
        cpu0 = common.cpu_clock(self.pids())
        ticks0 = common.cpu_times(self.pids())
        t0 = time.monotonic()
        subs = common.Subscribers(_lg(ctx, argv))
        self.subs.append(subs)
        ready, failed, lg_s = subs.wait_ready(connect_timeout + 30)
        if failed or ready < n:
            raise RuntimeError(f"{ready} of {n} subscribers ready, {failed} failed")
        # the server's own count: nginx push-stream sends no head before the
        # first message, and a long-poller is "ready" once its request is sent
        reg_s = _wait_registered(target, self.port, n, t0, connect_timeout)
        # A subscriber that got its head is registered, so the loadgen's time
        # is the server's. One counted when its request went out (push-stream's)
        # is registered when the server's count says so.
        on_send = bool(target.sub_opts(mode).get("e")) or mode == "lp"
        connect_s = reg_s if on_send and reg_s is not None else lg_s
        ticks1 = common.cpu_times(self.pids())
        info = {
            "connect_user_s": round(ticks1["user_s"] - ticks0["user_s"], 2),
            "connect_system_s": round(ticks1["system_s"] - ticks0["system_s"], 2),
            "connect_s": round(connect_s, 4),
            "loadgen_ready_s": lg_s,
            "registered_s": None if reg_s is None else round(reg_s, 4),
            "connect_cpu_s": round(common.cpu_clock(self.pids()) - cpu0, 4),
        }
        return subs, info


def run_fanout(ctx: RunCtx, target: Target, cell: Cell) -> dict[str, Any]:
    """Capacity (publish False), fan-out, publish rate and modes cells."""
    p = cell.params
    n, k, mode = p["n"], p["k"], p["mode"]
    publish = p.get("publish", True)
    m = p.get("messages", 0) if publish else 0
    rate = p.get("rate", 0)
    procs = _procs(ctx, n, p)
    # message phase limit: generous, as a bound rather than an expectation
    if rate:
        limit = m * k / rate + 30
    else:
        limit = 60 + n * m / 50_000
    res: dict[str, Any] = {}
    with _Run(ctx, target, cell) as run:
        _warmup(ctx, target, run.hp, mode)
        mem0, k0 = run.server.memory(), common.kernel_snapshot()
        subs, conn = run.connect(n, k, mode, m, limit, procs)
        time.sleep(p.get("settle", 1.0))
        mem1, k1 = run.server.memory(), common.kernel_snapshot()
        res["connect"] = conn
        if not publish:
            subs.stop()
            sub = subs.result(60)
            pub = None
        else:
            pids = run.pids()
            cpu1, ctx1 = common.cpu_times(pids), common.ctx_switches(pids)
            clk1 = common.cpu_clock(pids)
            mc1, lg1 = common.machine_cpu(), _tree_cpu(subs.proc.pid)
            pub_argv = common.loadgen_argv(
                "pub",
                run.hp,
                m=m,
                k=k,
                w=p.get("window", 100),
                r=rate or None,
                s=p.get("size") or None,
                t=limit,
            )
            pub = common.run_loadgen(_lg(ctx, pub_argv), limit + 30)
            done = subs.wait_done(limit + 30)
            pids = run.pids()
            cpu2, ctx2 = common.cpu_times(pids), common.ctx_switches(pids)
            clk2 = common.cpu_clock(pids)
            mc2, lg2 = common.machine_cpu(), _tree_cpu(subs.proc.pid)
            mem2 = run.server.memory()
            subs.stop()
            sub = subs.result(60)
            res["done"] = done
        alive = run.server.alive()
        nprocs = len(run.pids())

    ready = sub["ready"]
    kern = common.kernel_delta(k0, k1)
    metrics: dict[str, float] = {
        "connect_per_s": ready / conn["connect_s"] if conn["connect_s"] > 0 else 0,
        "connect_cpu_us": conn["connect_cpu_s"] * 1e6 / ready if ready else 0,
        "mem_private_per_sub": (mem1["private_kb"] - mem0["private_kb"])
        * 1024
        / max(ready, 1),
        "mem_pss_per_sub": (mem1["pss_kb"] - mem0["pss_kb"]) * 1024 / max(ready, 1),
        "kernel_per_sub": kern["kernel_bytes"] / max(ready, 1),
    }
    problems = _sub_check(sub, n, expect=publish)
    if not alive:
        problems.append("server died")
    res.update(
        mem={"idle": mem0, "connected": mem1, "nprocs": nprocs},
        kernel={k: v for k, v in kern.items() if k != "slab_caches"},
        sub=sub,
    )
    if publish and pub is not None:
        deliveries = sub["msgs"]
        span = (
            (sub["t_last_msg_us"] - pub["t_first_send_us"]) / 1e6
            if sub["t_last_msg_us"]
            else 0
        )
        server_cpu = clk2 - clk1
        # user/system split from /proc ticks (10 ms): only a share, and only
        # when there are enough ticks to mean something
        sys_cpu = cpu2["system_s"] - cpu1["system_s"]
        ticks = sys_cpu + cpu2["user_s"] - cpu1["user_s"]
        mc = common.cpu_delta(mc1, mc2)
        loadgen_cpu = (lg2 - lg1) + pub["cpu_s"]
        metrics.update(
            deliveries_per_s=deliveries / span if span > 0 else 0,
            cpu_s_per_M=server_cpu * 1e6 / deliveries if deliveries else 0,
            msgs_per_read=sub["msgs"] / sub["reads"] if sub["reads"] else 0,
            pub_per_s=pub["pub_per_s"],
            cpu_us_per_pub=server_cpu * 1e6 / pub["acked"] if pub["acked"] else 0,
            loadgen_cpu_s=loadgen_cpu,
            server_cpu_s=server_cpu,
            **_lat_ms(sub),
        )
        if ticks >= 0.2:
            metrics["cpu_sys_share"] = sys_cpu / ticks
        wall = (pub["t_last_ack_us"] - pub["t_start_us"]) / 1e6
        busy = mc["busy_s"]
        res.update(
            pub=pub,
            mem={**res["mem"], "after": mem2},
            deliveries=deliveries,
            expected_deliveries=n * m,
            span_s=round(span, 4),
            server_cpu={
                "user_s": round(cpu2["user_s"] - cpu1["user_s"], 3),
                "system_s": round(sys_cpu, 3),
                "ctx_voluntary": ctx2["voluntary"] - ctx1["voluntary"],
                "ctx_involuntary": ctx2["involuntary"] - ctx1["involuntary"],
            },
            machine_cpu={
                k_: v
                for k_, v in mc.items()
                if k_ in ("busy_s", "user_s", "system_s", "softirq_s", "idle_s")
            },
            # CPU that neither the server nor loadgen was charged for over the
            # phase: softirq work and other people's processes
            other_cpu_s=round(busy - server_cpu - loadgen_cpu, 3),
            loadgen={
                "sub_s": round(lg2 - lg1, 3),
                "pub_s": pub["cpu_s"],
                "procs": sub["procs"],
                # a loadgen process near one full core is a suspect bottleneck
                # (only over phases long enough for the share to mean something)
                "sub_core_share": round((lg2 - lg1) / span / sub["procs"], 3)
                if span >= 0.5
                else None,
                "pub_core_share": round(pub["cpu_s"] / wall, 3)
                if wall >= 0.5
                else None,
            },
        )
        if pub["errors"] or pub["acked"] != m * k:
            problems.append(
                f"publisher acked {pub['acked']}/{m * k}, errors {pub['errors']}"
            )
        if res.get("done") != "complete":
            problems.append(f"loadgen sub ended {res.get('done')}")
    res["metrics"] = {k_: round(v, 6) for k_, v in metrics.items()}
    res["ok"] = not problems
    res["problems"] = problems
    return res


def run_churn(ctx: RunCtx, target: Target, cell: Cell) -> dict[str, Any]:
    """Steady subscribers get every message in order while others come and go."""
    p = cell.params
    n, k, mode, rate, secs = p["n"], p["k"], p["mode"], p["rate"], p["seconds"]
    m = max(1, round(rate * secs / k))
    limit = secs + 60
    churn: dict[str, Any] = {
        "batches": 0,
        "established": 0,
        "ready": 0,
        "failed": 0,
        "errors": 0,
        "gaps": 0,
        "ooo": 0,
        "msgs": 0,
        "failures": [],
    }
    res: dict[str, Any] = {}
    with _Run(ctx, target, cell) as run:
        _warmup(ctx, target, run.hp, mode)
        mem0 = run.server.memory()
        subs, conn = run.connect(n, k, mode, m, limit, _procs(ctx, n, p))
        time.sleep(p.get("settle", 1.0))
        mem1 = run.server.memory()
        pids = run.pids()
        cpu1, mc1 = common.cpu_clock(pids), common.machine_cpu()
        pub_argv = common.loadgen_argv(
            "pub", run.hp, m=m, k=k, w=p.get("window", 100), r=rate, t=limit
        )
        box: dict[str, Any] = {}

        def publish() -> None:
            try:
                box["pub"] = common.run_loadgen(_lg(ctx, pub_argv), limit + 30)
            except Exception as e:  # reported below
                box["error"] = e

        th = threading.Thread(target=publish, daemon=True)
        t0 = time.monotonic()
        th.start()
        # churners: batches that connect, take whatever comes (first seq any,
        # then in order), stay `hold` seconds and leave, until publishing ends
        while th.is_alive():
            argv = common.loadgen_argv(
                "sub",
                run.hp,
                c=p["batch"],
                k=k,
                p=1,
                u=SUB_PREFIX[mode] + "ch{}",
                P=mode,
                m=0,
                t=p["hold"],
                T=10,
                F=0,
                A=250,
                **target.sub_opts(mode),
            )
            try:
                r = common.run_loadgen(_lg(ctx, argv), p["hold"] + 40)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                churn["failures"].append(str(e)[:200])
                continue
            churn["batches"] += 1
            for f in ("established", "ready", "failed", "gaps", "ooo", "msgs"):
                churn[f] += r.get(f, 0)
            churn["errors"] += r.get("http_errors", 0) + r.get("protocol_errors", 0)
        churn_s = time.monotonic() - t0
        th.join(limit + 60)
        done = subs.wait_done(limit)
        cpu2, mc2 = common.cpu_clock(run.pids()), common.machine_cpu()
        time.sleep(max(p.get("settle", 1.0), 1.0))  # let closes finish
        mem2 = run.server.memory()
        subs.stop()
        sub = subs.result(60)
        alive = run.server.alive()
    if "error" in box:
        raise box["error"]
    pub = box["pub"]
    deliveries = sub["msgs"] + churn["msgs"]
    server_cpu = cpu2 - cpu1
    problems = _sub_check(sub, n, expect=True)
    if churn["failed"] or churn["errors"] or churn["gaps"] or churn["ooo"]:
        problems.append(
            f"churners: failed {churn['failed']} errors {churn['errors']} "
            f"gaps {churn['gaps']} ooo {churn['ooo']}"
        )
    if churn["failures"]:
        problems.append(f"{len(churn['failures'])} churn batches gave no result")
    if pub["errors"] or pub["acked"] != m * k:
        problems.append(f"publisher acked {pub['acked']}/{m * k}")
    if done != "complete":
        problems.append(f"loadgen sub ended {done}")
    if not alive:
        problems.append("server died")
    metrics = {
        "churn_per_s": churn["established"] / churn_s if churn_s > 0 else 0,
        "cpu_s_per_M": server_cpu * 1e6 / deliveries if deliveries else 0,
        "mem_growth_per_churn": (mem2["private_kb"] - mem1["private_kb"])
        * 1024
        / max(churn["established"], 1),
        "connect_per_s": n / conn["connect_s"] if conn["connect_s"] > 0 else 0,
        "server_cpu_s": server_cpu,
        "cpu_us_per_churn": server_cpu * 1e6 / max(churn["established"], 1),
        **_lat_ms(sub),
    }
    res.update(
        ok=not problems,
        problems=problems,
        connect=conn,
        churn={**churn, "seconds": round(churn_s, 3)},
        mem={"idle": mem0, "connected": mem1, "after": mem2},
        deliveries=deliveries,
        machine_cpu=common.cpu_delta(mc1, mc2),
        sub=sub,
        pub=pub,
        metrics={k_: round(v, 6) for k_, v in metrics.items()},
    )
    return res


def run_million(ctx: RunCtx, target: Target, cell: Cell) -> dict[str, Any]:
    """The 1M cell: bench/fanout_check.py, which checks every delivery."""
    p = cell.params
    n, m = p["n"], p["messages"]
    out = tempfile.mktemp(prefix="suite-million-", suffix=".json")
    argv = [
        sys.executable,
        os.path.join(common.BENCH_DIR, "fanout_check.py"),
        "--server",
        "fastpush",
        "--workers",
        str(p["workers"]),
        "--subscribers",
        str(n),
        "--messages",
        str(m),
        "--fastpush-cmd",
        " ".join(target.cmd),  # type: ignore[attr-defined]
        "--out",
        out,
    ]
    if ctx.pin_server:
        argv += ["--pin-server", ctx.pin_server]
    if ctx.pin_loadgen:
        argv += ["--pin-loadgen", ctx.pin_loadgen]
    if ctx.loadgen_batch:
        argv.append("--loadgen-batch")
    ctx.log(f"  {' '.join(argv[1:])}")
    r = subprocess.run(argv, capture_output=True, timeout=1800 + n / 1000)
    try:
        raw = common.parse_json_line(r.stdout.decode())
    except ValueError:
        raise RuntimeError(
            f"fanout_check failed ({r.returncode}): {r.stderr.decode()[-800:]}"
        ) from None
    finally:
        if os.path.exists(out):
            os.unlink(out)
    problems = [] if raw.get("ok") else [f"fanout_check: {raw.get('problems', raw)}"]
    mem = raw.get("server_mem", {})
    metrics = {
        "held": raw.get("ready", 0),
        "connect_s": raw.get("connect_s", 0),
        "burst_s": raw.get("first_publish_to_last_delivery_s", 0),
        "burst_p99_s": raw.get("lat_us", {}).get("p99", 0) / 1e6,
        "mem_gib": mem.get("pss_connected_kb", 0) / 1024**2,
        "mem_pss_per_sub": mem.get("pss_per_sub_bytes", 0),
        "kernel_per_sub": raw.get("kernel_mem", {}).get("per_sub_bytes", 0),
    }
    return {
        "ok": not problems,
        "problems": problems,
        "million": raw,
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
    }
