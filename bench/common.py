"""Helpers shared by the benchmark driver scripts in bench/.

Process control (free port, start/stop a server and wait until it listens, run
bench/bin/loadgen and parse its JSON line), accounting from /proc (PSS/RSS and
CPU seconds of a process tree, the kernel's socket and slab memory) and a
description of the machine, so every result line says where it was measured.

Only the standard library; Linux only (everything is read from /proc).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
BIN_DIR = os.path.join(BENCH_DIR, "bin")
LOADGEN = os.path.join(BIN_DIR, "loadgen")
BARE_SERVER = os.path.join(BIN_DIR, "bare_server")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- build, limits


def build_tools() -> None:
    """Build loadgen and bare_server (make -C bench) if they are missing or stale."""
    subprocess.run(
        ["make", "-s", "-C", BENCH_DIR], check=True, stdout=subprocess.DEVNULL
    )


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_listen(
    host: str,
    port: int,
    timeout: float = 10.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until host:port accepts a TCP connection; fail if proc exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout}s"
                ) from None
            time.sleep(0.05)


# ---------------------------------------------------------------- /proc accounting


def children_of(pid: int) -> list[int]:
    """Direct children of pid, from /proc/<pid>/task/*/children."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            tree.append(p)
            todo.extend(children_of(p))
    return tree


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    """Fields of /proc/<pid>/smaps_rollup in kB (Pss, Private_Dirty, ...)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (shared pages split between sharers)."""
    return smaps_rollup_kb(pid).get("Pss", 0)


def tree_memory(pids: Iterable[int]) -> dict[str, int]:
    """Memory of pids in kB, summed.

    pss: shared pages split between the processes that map them -- the headline,
    but it moves when unrelated processes map the same libraries; private: pages
    only these processes map (Private_Clean + Private_Dirty), immune to that;
    rss and anon (RssAnon) for reference.
    """
    pss = priv = rss = anon = n = 0
    for p in pids:
        r = smaps_rollup_kb(p)
        if not r:
            continue
        n += 1
        pss += r.get("Pss", 0)
        priv += r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
        rss += r.get("Rss", 0)
        anon += _status_kb(p, "RssAnon")
    return {
        "pss_kb": pss,
        "private_kb": priv,
        "rss_kb": rss,
        "anon_kb": anon,
        "nprocs": n,
    }


def cpu_seconds(pids: Iterable[int], include_reaped: bool = True) -> float:
    """utime+stime of pids; with include_reaped also their reaped children's."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                # the command name may hold spaces: split after its closing ')'
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is state (field 3); utime, stime, cutime, cstime are 14..17
        total += int(fields[11]) + int(fields[12])
        if include_reaped:
            total += int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def cpu_times(pids: Iterable[int], include_reaped: bool = True) -> dict[str, float]:
    """user_s and system_s of pids (with reaped children's), split as cpu_seconds.

    System time is mostly send()/recv() work, and on loopback also the softirq
    delivery of what the process sent when it ran in the sender's context.
    """
    user = system = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        user += int(fields[11]) + (int(fields[13]) if include_reaped else 0)
        system += int(fields[12]) + (int(fields[14]) if include_reaped else 0)
    return {"user_s": user / CLK_TCK, "system_s": system / CLK_TCK}


def cpu_clock(pids: Iterable[int]) -> float:
    """CPU seconds of live pids, nanosecond-precise (each process's CPU clock).

    /proc/PID/stat counts in clock ticks (10 ms here), too coarse for a server
    that spends 20 ms on a fan-out; clock_gettime on the process CPU clock
    (clock_getcpuclockid: ((~pid) << 3) | CPUCLOCK_SCHED) is exact. Processes
    that exited meanwhile are left out (unlike cpu_seconds' reaped children).
    """
    total = 0.0
    for p in pids:
        try:
            total += time.clock_gettime(((~p) << 3) | 2)
        except OSError:
            continue
    return total


def ctx_switches(pids: Iterable[int]) -> dict[str, int]:
    """Voluntary and involuntary context switches of pids so far (/proc status)."""
    vol = invol = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except OSError:
            continue
    return {"voluntary": vol, "involuntary": invol}


def machine_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds so far from /proc/stat (all CPUs summed).

    Loopback TCP receive work often runs in ksoftirqd, charged to no process
    of the benchmark: compare busy_s deltas with the per-process numbers.
    """
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    d = {n: v[i] / CLK_TCK for i, n in enumerate(names) if i < len(v)}
    d["busy"] = sum(d[n] for n in names if n in d and n not in ("idle", "iowait"))
    return d


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k + "_s": round(after[k] - before[k], 3) for k in after}


def sockstat() -> dict[str, int]:
    """/proc/net/sockstat TCP line; mem_bytes is the kernel's TCP buffer memory."""
    out: dict[str, int] = {}
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                out = {parts[i]: int(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}
            elif line.startswith("sockets:"):
                out["sockets_used"] = int(line.split()[2])
    out["mem_bytes"] = out.get("mem", 0) * PAGE_SIZE
    return out


def listen_drops() -> dict[str, int]:
    """The kernel's count of connections a listening socket could not take
    (/proc/net/netstat TcpExt ListenOverflows: the accept queue was full;
    ListenDrops: that and any other drop), since boot, whole machine."""
    try:
        with open("/proc/net/netstat") as f:
            lines = [line.split() for line in f if line.startswith("TcpExt:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    fields = dict(zip(lines[0][1:], lines[1][1:]))
    return {
        "overflows": int(fields.get("ListenOverflows", 0)),
        "drops": int(fields.get("ListenDrops", 0)),
    }


# Slab caches that grow with connections: the sockets themselves, their inodes
# and files, epoll items, and buffers queued on them.
SLAB_CACHES = (
    "TCP",
    "tcp_bind_bucket",
    "tcp_bind2_bucket",
    "request_sock_TCP",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
    "skbuff_head_cache",
    "skbuff_fclone_cache",
    "selinux_file_security",
    "kmalloc-64",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
    "kmalloc-4k",
    "kmalloc-8k",
    "kmalloc-cg-64",
    "kmalloc-cg-128",
    "kmalloc-cg-192",
    "kmalloc-cg-256",
    "kmalloc-cg-512",
    "kmalloc-cg-1k",
    "kmalloc-cg-2k",
    "kmalloc-cg-4k",
    "kmalloc-cg-8k",
)


def slab_bytes() -> dict[str, int] | None:
    """Bytes held by the SLAB_CACHES (num_objs * objsize), or None if unreadable."""
    try:
        with open("/proc/slabinfo") as f:
            lines = f.readlines()[2:]
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in lines:
        p = line.split()
        if p[0] in SLAB_CACHES:
            out[p[0]] = out.get(p[0], 0) + int(p[2]) * int(p[3])
    return out


def meminfo_kb() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return {ln.split(":")[0]: int(ln.split()[1]) for ln in f}


def kernel_snapshot() -> dict[str, Any]:
    """What the kernel holds for sockets right now (whole machine)."""
    mi = meminfo_kb()
    return {
        "sockstat": sockstat(),
        "slab": slab_bytes(),
        "meminfo_slab_kb": mi.get("Slab", 0),
        "mem_used_kb": mi.get("MemTotal", 0) - mi.get("MemAvailable", 0),
        "listen": listen_drops(),
    }


def kernel_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Growth of the kernel's share between two snapshots, in bytes.

    kernel_bytes = TCP buffer memory (sockstat mem) + slab growth: from the
    connection-related caches of /proc/slabinfo when readable (slab_source
    "slabinfo"), else the whole Slab line of /proc/meminfo ("meminfo").
    """
    sock = after["sockstat"]["mem_bytes"] - before["sockstat"]["mem_bytes"]
    if before["slab"] is not None and after["slab"] is not None:
        per = {
            k: after["slab"].get(k, 0) - before["slab"].get(k, 0) for k in after["slab"]
        }
        per = {k: v for k, v in per.items() if v}
        slab, source = sum(per.values()), "slabinfo"
    else:
        per = {}
        slab = (after["meminfo_slab_kb"] - before["meminfo_slab_kb"]) * 1024
        source = "meminfo"
    return {
        "sock_mem_bytes": sock,
        "slab_bytes": slab,
        "slab_source": source,
        "slab_caches": per,
        "kernel_bytes": sock + slab,
        "tcp_inuse": after["sockstat"].get("inuse", 0)
        - before["sockstat"].get("inuse", 0),
        # Connections the servers' accept queues turned away in between: a
        # client then sees an established socket that is never answered.
        "listen_overflows": after.get("listen", {}).get("overflows", 0)
        - before.get("listen", {}).get("overflows", 0),
        "listen_drops": after.get("listen", {}).get("drops", 0)
        - before.get("listen", {}).get("drops", 0),
    }


# ---------------------------------------------------------------- machine


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """CPU, kernel, memory and the sysctls/limits that bound connection counts."""
    model = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    sysctls = {
        name: _read("/proc/sys/" + name.replace(".", "/"))
        for name in (
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.ip_local_port_range",
            "net.ipv4.tcp_mem",
            "net.ipv4.tcp_rmem",
            "net.ipv4.tcp_wmem",
            "net.core.rmem_max",
            "net.core.wmem_max",
            "fs.file-max",
            "fs.nr_open",
            "net.netfilter.nf_conntrack_max",
        )
    }
    return {
        "cpu": model,
        "ncpu": os.cpu_count(),
        "kernel": platform.release(),
        "mem_total_kb": meminfo_kb().get("MemTotal", 0),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "python": platform.python_version(),
        "sysctl": {k: " ".join(v.split()) for k, v in sysctls.items() if v},
    }


# ---------------------------------------------------------------- servers


class Server:
    """A server subprocess in its own session, stopped with its whole group.

    >>> srv = Server([BARE_SERVER, "-l", "127.0.0.1:9080"], "127.0.0.1", 9080)
    >>> srv.start(); ...; srv.stop()
    """

    def __init__(
        self,
        argv: Sequence[str],
        host: str,
        port: int,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.host, self.port = host, port
        self.cwd, self.env, self.log_path = cwd, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Server:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        wait_listen(self.host, self.port, timeout, self.proc)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def memory(self) -> dict[str, int]:
        return tree_memory(self.pids())

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after timeout."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:  # workers left behind by a parent that died first
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- loadgen


def parse_json_line(text: str) -> dict[str, Any]:
    """The last line of text that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except ValueError:
                continue
    raise ValueError(f"no JSON line in loadgen output: {text[-500:]!r}")


def loadgen_argv(mode: str, target: str, **opts: Any) -> list[str]:
    """argv for bin/loadgen; opts map flag letters to values, e.g. c=1000, P="ws"."""
    argv = [LOADGEN, mode]
    for k, v in opts.items():
        if v is None or v is False:
            continue
        if k == "H":
            for h in v:
                argv += ["-H", h]
        elif v is True:
            argv.append("-" + k)
        else:
            argv += ["-" + k, str(v)]
    return argv + [target]


def loadgen_wrap(argv: Sequence[str], pin: str = "", batch: bool = False) -> list[str]:
    """argv run on the CPU list pin (taskset), and under SCHED_BATCH with
    batch (chrt): then its wakeups never preempt a running server process.
    With server and load generator on the same 2 cores, a delivery that
    wakes a loadgen process may otherwise switch the CPU to another
    runnable task mid-fan-out, a cost remote clients do not cause."""
    pre = ["taskset", "-c", pin] if pin else []
    if batch:
        pre += ["chrt", "--batch", "0"]
    return pre + list(argv)


def run_loadgen(argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run loadgen to the end and return its JSON result (raises on no result)."""
    r = subprocess.run(list(argv), capture_output=True, timeout=timeout)
    try:
        res = parse_json_line(r.stdout.decode())
    except ValueError:
        err = r.stderr.decode()[-1000:]
        raise RuntimeError(f"loadgen failed ({r.returncode}): {err}") from None
    res["returncode"] = r.returncode
    return res


class Subscribers:
    """A `loadgen sub` run in the background: start, wait_ready(), result()."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.ready: tuple[int, int, float] | None = None
        self._ready_evt = threading.Event()
        self._done_evt = threading.Event()
        self.done: str | None = None
        self._err: list[str] = []
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line.startswith("READY ") and self.ready is None:
                _, ok, failed, secs = line.split()
                self.ready = (int(ok), int(failed), float(secs))
                self._ready_evt.set()
            elif line.startswith("DONE ") and self.done is None:
                self.done = line.split()[1]
                self._done_evt.set()
            else:
                self._err.append(line)
        self._ready_evt.set()  # exited: never ready
        self._done_evt.set()

    def wait_ready(self, timeout: float) -> tuple[int, int, float]:
        """(ready, failed, seconds) once every subscriber got its head or failed."""
        if not self._ready_evt.wait(timeout) or self.ready is None:
            self.stop()
            raise RuntimeError(
                "subscribers never became ready: " + " | ".join(self._err[-5:])
            )
        return self.ready

    def wait_done(self, timeout: float) -> str | None:
        """With -L: "complete" or "timeout" once loadgen holds its finished state."""
        self._done_evt.wait(timeout)
        return self.done

    def stop(self) -> None:
        """Ask for the report now (SIGUSR1)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            out, _ = self.proc.communicate(timeout=30)
        self._t.join(5)
        try:
            res = parse_json_line(out.decode())
        except ValueError:
            err = " | ".join(self._err[-5:])
            raise RuntimeError("loadgen sub gave no result: " + err) from None
        res["returncode"] = self.proc.returncode
        return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def channels_stats(
    host: str,
    port: int,
    query: str = "",
    path: str = "/channels-stats",
    timeout: float = 5.0,
) -> dict[str, Any] | None:
    """The server's push-stream channels-stats answer, or None."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path + query)
        r = conn.getresponse()
        body = r.read()
        return json.loads(body) if r.status == 200 else None  # type: ignore[no-any-return]
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def channel_subscribers(
    host: str,
    port: int,
    channel: str,
    path: str = "/channels-stats",
    timeout: float = 5.0,
) -> int | None:
    """Subscribers of channel as the server counts them (push-stream channels-stats)."""
    stats = channels_stats(host, port, f"?id={channel}", path, timeout)
    try:
        return int(stats["subscribers"]) if stats is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def workers_up(host: str, port: int, n: int, timeout: float) -> int:
    """Workers a fastpush server lists in /channels-stats (by_worker), once
    it lists n or timeout passed. A server whose workers are still booting
    takes every connection on the ones already listening (SO_REUSEPORT
    spreads only over the sockets bound so far), so runs start after this."""
    deadline = time.monotonic() + timeout
    while True:
        stats = channels_stats(host, port, timeout=3)
        seen = len(stats.get("by_worker", [])) if isinstance(stats, dict) else 0
        if seen >= n or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def wait_subscribers(
    host: str, port: int, channel: str, want: int, timeout: float
) -> int:
    """Poll channels-stats until the server has registered want subscribers."""
    deadline = time.monotonic() + timeout
    n = None
    while time.monotonic() < deadline:
        n = channel_subscribers(host, port, channel)
        if n is not None and n >= want:
            return n
        time.sleep(0.1)
    raise TimeoutError(f"server registered {n} of {want} subscribers after {timeout}s")


def fastpush_command() -> list[str]:
    """How to run the fastpush CLI: the installed script, else python -m fastpush."""
    exe = shutil.which("fastpush")
    return [exe] if exe else [sys.executable, "-m", "fastpush"]


def split_cmd(cmd: str) -> list[str]:
    return shlex.split(cmd)
