"""`fastpush serve --workers N`: one supervisor, N worker processes.

The supervisor runs the sequencer (fastpush.sequencer) and starts each
worker as `python -m fastpush worker`, handing it one end of a socketpair
for the bus and its own listening sockets. Each worker has a socket of its
own per address (SO_REUSEPORT), so the kernel spreads new connections over
them; the supervisor binds all of them before the first worker starts, as
nginx's master does, because the kernel spreads only over the sockets bound
so far: workers that bound theirs while the others still boot would take
every early connection and could reach their file limit with the others
half empty. A worker that dies has its sockets closed (what waited in them
goes, and new connections go to the living) and gets new ones.

Signals only put their number on a queue; the main loop dispatches
handle_<name>, as gunicorn's arbiter does:
  SIGTERM  drain: workers send footers, finish what is in flight, exit 0
  SIGINT   the same, for a person at a terminal
  SIGHUP   reload: the file is read again; workers apply it to new requests
           and keep every connected subscriber
A worker that dies is started again after a backoff that grows while it
keeps dying young; one that cannot boot at all stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastpush.config import Config, ConfigError, load_config
from fastpush.sequencer import Sequencer
from fastpush.server import make_sockets

log = logging.getLogger("fastpush.supervisor")

# Exit status of a worker that could not start (bad listen address, ...):
# restarting it would only fail again.
WORKER_BOOT_ERROR = 3
# A worker that lived shorter than this counts as a crash loop.
YOUNG = 5.0
MAX_BACKOFF = 10.0
# Boot failures in a row after which the supervisor gives up.
MAX_BOOT_FAILURES = 5
DRAIN_TIMEOUT = 30.0


@dataclass
class WorkerSlot:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    failures: int = 0  # consecutive young deaths
    boot_failures: int = 0
    restarts: int = 0
    # The worker's listening sockets, one per address, or None between a
    # death and the next start.
    socks: list[socket.socket] | None = field(default=None, repr=False)
    waiter: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        listen_args: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.listen_args = list(listen_args)
        self.slots = [WorkerSlot(i) for i in range(config.workers)]
        self.signals: asyncio.Queue[int] = asyncio.Queue()
        self.stopping = False
        self.exit_code = 0
        self.loop = asyncio.get_running_loop()
        self.sequencer = Sequencer(config.settings, self.loop)

    # -- main loop -----------------------------------------------------------

    async def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.loop.add_signal_handler(signum, self.signals.put_nowait, signum)
        try:
            for slot in self.slots:
                slot.socks = make_sockets(self.config)
        except OSError as err:
            print(f"fastpush: cannot listen: {err}", file=sys.stderr, flush=True)
            self.close_sockets()
            return 1
        collector = self.loop.create_task(self._collect())
        for slot in self.slots:
            await self.spawn(slot)
        addrs = ", ".join(f"{h}:{p}" for h, p in self.config.listen)
        print(
            f"fastpush: supervisor {os.getpid()}, {len(self.slots)} workers on {addrs}",
            flush=True,
        )
        while not self.stopping:
            sig = await self.signals.get()
            name = signal.Signals(sig).name.lower()
            await getattr(self, f"handle_{name}")()
        collector.cancel()
        self.close_sockets()
        return self.exit_code

    def close_sockets(self, slot: WorkerSlot | None = None) -> None:
        for sl in self.slots if slot is None else [slot]:
            for sock in sl.socks or ():
                sock.close()
            sl.socks = None

    async def handle_sigterm(self) -> None:
        log.info("SIGTERM: draining %d workers", len(self.slots))
        await self.stop(signal.SIGTERM)

    async def handle_sigint(self) -> None:
        log.info("SIGINT: stopping")
        await self.stop(signal.SIGTERM)

    async def handle_sighup(self) -> None:
        try:
            config = load_config(
                self.config_path,
                listen=self.listen_args or None,
                workers=len(self.slots),
            )
        except ConfigError as err:
            log.error("SIGHUP: configuration not reloaded: %s", err)
            return
        self.config = config
        self.sequencer.settings = config.settings
        log.info("SIGHUP: configuration reloaded; telling the workers")
        for slot in self.slots:
            if slot.proc is not None and slot.proc.returncode is None:
                slot.proc.send_signal(signal.SIGHUP)

    async def stop(self, sig: int) -> None:
        self.stopping = True
        procs = [s.proc for s in self.slots if s.proc and s.proc.returncode is None]
        for proc in procs:
            proc.send_signal(sig)
        if procs:
            done, pending = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in procs], timeout=DRAIN_TIMEOUT
            )
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        for slot in self.slots:
            if slot.waiter is not None:
                slot.waiter.cancel()

    # -- workers ---------------------------------------------------------------

    def worker_command(self, slot: WorkerSlot, fd: int) -> list[str]:
        cmd = [sys.executable, "-m", "fastpush", "worker", "--bus-fd", str(fd)]
        cmd += ["--index", str(slot.index), "--workers", str(len(self.slots))]
        for sock in slot.socks or ():
            cmd += ["--listen-fd", str(sock.fileno())]
        if self.config_path:
            cmd += ["--config", self.config_path]
        for addr in self.listen_args:
            cmd += ["--listen", addr]
        return cmd

    async def spawn(self, slot: WorkerSlot) -> None:
        if slot.socks is None:
            # A restart: the same addresses; the sockets of the others hold
            # the port, and SO_REUSEPORT lets this one join them.
            slot.socks = make_sockets(self.config)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            slot.proc = await asyncio.create_subprocess_exec(
                *self.worker_command(slot, theirs.fileno()),
                pass_fds=(theirs.fileno(), *(sock.fileno() for sock in slot.socks)),
            )
        finally:
            theirs.close()
        slot.started = time.monotonic()
        await self.sequencer.add_worker(slot.index, mine)
        slot.waiter = self.loop.create_task(self._watch(slot, slot.proc))

    async def _watch(self, slot: WorkerSlot, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self.stopping:
            return
        self.close_sockets(slot)
        lived = time.monotonic() - slot.started
        why = f"signal {-code}" if code < 0 else f"exit status {code}"
        log.error(
            "worker %d (pid %d) died: %s after %.1f s", slot.index, proc.pid, why, lived
        )
        if code == WORKER_BOOT_ERROR:
            slot.boot_failures += 1
            if slot.boot_failures >= MAX_BOOT_FAILURES:
                log.critical("worker %d cannot boot; stopping the server", slot.index)
                self.exit_code = 1
                self.signals.put_nowait(signal.SIGTERM)
                return
        else:
            slot.boot_failures = 0
        # Back off while it keeps dying young, so a crash loop does not
        # spin the machine; a worker that ran a while restarts at once.
        slot.failures = slot.failures + 1 if lived < YOUNG else 0
        delay = min(MAX_BACKOFF, 0.1 * (2**slot.failures)) if slot.failures else 0.0
        if delay:
            log.warning("restarting worker %d in %.1f s", slot.index, delay)
            await asyncio.sleep(delay)
        if not self.stopping:
            slot.restarts += 1
            try:
                await self.spawn(slot)
            except OSError as err:
                log.critical("worker %d cannot listen (%s); stopping", slot.index, err)
                self.exit_code = 1
                self.signals.put_nowait(signal.SIGTERM)

    async def _collect(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sequencer.collect()


def run(config: Config, config_path: str | None, listen_args: Sequence[str]) -> int:
    import uvloop

    async def main() -> int:
        return await Supervisor(
            config, config_path=config_path, listen_args=listen_args
        ).run()

    return uvloop.run(main())
