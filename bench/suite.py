#!/usr/bin/env python3
"""fastpush against nginx push-stream, Nchan and the bare C floor, side by side.

One command runs every scenario against every target on this machine, in the
same run, alternating the targets and repeating each cell (median of at least
3; the full profile runs the two targets a goal compares 5 times), and reports
ratios:

  python bench/suite.py --quick      # a few minutes: 1k/10k subscribers
  python bench/suite.py              # the full set: 1k/10k/50k, every mode
  FASTPUSH_BENCH_NGINX=/path/to/nginx python bench/suite.py --quick

Targets (--targets): fastpush (``fastpush serve`` with a generated TOML),
nginx (push-stream; binary from --nginx or FASTPUSH_BENCH_NGINX, else skipped
and the report says why), nchan (Debian's libnginx-mod-nchan loaded into
whichever nginx accepts it, else skipped), bare (bench/bin/bare_server, the
floor). Every target gets the same locations (/pub, /sub/, /ev/, /lp/, /ws/),
keep-alive limit, listen backlog, worker count and message store.

Scenarios (--scenarios): capacity (idle subscribers: memory per subscriber,
kernel memory, connect rate), fanout (1k/10k/50k subscribers on 1 and 100
channels, back to back and paced), publish (keep-alive and pipelined publish
rate), churn (subscribers come and go while messages flow), modes (streaming,
eventsource, websocket, long-polling), million (full profile: 1M streaming
subscribers on one channel and a 10-message burst, fastpush only, one round,
through bench/fanout_check.py). The load generator is bench/bin/loadgen
(C, forking); it checks every message's order and completeness and reports its
own CPU, and the report flags runs where it may have been the bottleneck.

Writes bench/out/<date-time>/ (and the link bench/out/latest):
  results.jsonl  a "meta" line (machine, kernel settings, flags, versions), one
                 "run" line per run (raw loadgen output and /proc figures), one
                 "cell" line per cell (medians, min/max, ratios)
  summary.json   medians, ratios, target verdicts, baseline comparison
  report.md      the tables; also printed at the end
  *.png          plots (bench/plot.py; needs pip install -r bench/requirements.txt)
and compares with bench/baseline.json (--update-baseline rewrites its profile).

perf does not count on this VM (perf stat shows "<not counted>" for
task-clock, context switches and syscall tracepoints). Where it does, profile
the server of a run with the pid --verbose prints:
  perf stat -e task-clock,context-switches,syscalls:sys_enter_sendto \
      -e syscalls:sys_enter_writev -p <server pid> -- sleep 10
  perf record -g -p <server pid> -- sleep 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import signal
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import scenarios  # noqa: E402
from scenarios import METRICS, Cell, Target  # noqa: E402

BASELINE = os.path.join(common.BENCH_DIR, "baseline.json")
OUT_DIR = os.path.join(common.BENCH_DIR, "out")
TARGETS = ("fastpush", "nginx", "nchan", "bare")
SCENARIOS = ("capacity", "fanout", "publish", "churn", "modes", "million")
# shown per target but not divided: context, not a result
NO_RATIO = ("loadgen_cpu_s", "cpu_sys_share")

# ---------------------------------------------------------------- the targets


def _verdict_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The benchmark issue's targets, each met / missed / n/a, from the medians."""
    cells = summary["cells"]
    rows: list[dict[str, Any]] = []

    def med(cid: str, target: str, metric: str) -> float | None:
        return (
            cells.get(cid, {})
            .get("targets", {})
            .get(target, {})
            .get("median", {})
            .get(metric)
        )

    def why_na(cid: str, target: str) -> str:
        c = cells.get(cid)
        if c is None:
            return f"cell {cid} not run"
        t = c["targets"].get(target, {})
        return t.get("skipped") or t.get("error") or f"no {target} result"

    def row(goal: str, cid: str, shown: str, ok: bool | None, na: str = "") -> None:
        rows.append(
            {
                "goal": goal,
                "cell": cid,
                "measured": shown,
                "verdict": "n/a" if ok is None else ("met" if ok else "MISSED"),
                "note": na,
            }
        )

    caps = sorted(
        (c for c in cells.values() if c["scenario"] == "capacity"),
        key=lambda c: c["params"]["n"],
    )
    for c in caps or [None]:
        cid = c["id"] if c else "capacity"
        goal = "server memory per idle streaming subscriber <= 1,000 B"
        priv, pss = (
            med(cid, "fastpush", "mem_private_per_sub"),
            med(cid, "fastpush", "mem_pss_per_sub"),
        )
        if priv is None or pss is None:
            row(goal, cid, "", None, why_na(cid, "fastpush"))
        else:
            worst = max(priv, pss)
            row(goal, cid, f"private {priv:,.0f} B, PSS {pss:,.0f} B", worst <= 1000)
    for pub, k in (("b2b", 1), ("paced", 1), ("b2b", 100), ("paced", 100)):
        for n in (1000, 10000, 50000):
            cid = f"fanout/stream/n{n}/k{k}/{pub}"
            if cid not in cells and (n == 50000 or k == 100):
                continue
            goal = f"CPU s per 1M deliveries <= 1.1x bare ({pub}, {k} ch)"
            a, b = med(cid, "fastpush", "cpu_s_per_M"), med(cid, "bare", "cpu_s_per_M")
            if a is None or b is None or b <= 0:
                row(
                    goal,
                    cid,
                    "",
                    None,
                    why_na(cid, "fastpush" if a is None else "bare"),
                )
            else:
                row(goal, cid, f"{a:.3f} vs {b:.3f} s = {a / b:.2f}x", a / b <= 1.1)
    cid = "fanout/stream/n1000/k1/b2b"
    a, b = (
        med(cid, "fastpush", "deliveries_per_s"),
        med(cid, "nginx", "deliveries_per_s"),
    )
    goal = "back-to-back deliveries/s >= 2x push-stream, 1k subs, 1 channel"
    if a is None or b is None or b <= 0:
        row(goal, cid, "", None, why_na(cid, "fastpush" if a is None else "nginx"))
    else:
        row(goal, cid, f"{a:,.0f} vs {b:,.0f} = {a / b:.1f}x", a / b >= 2)
    cid = "fanout/stream/n10000/k1/paced"
    a, b = med(cid, "fastpush", "lat_p99_ms"), med(cid, "bare", "lat_p99_ms")
    goal = "p99 latency, 10k subs at 5 msg/s <= 1.1x bare"
    if a is None or b is None or b <= 0:
        row(goal, cid, "", None, why_na(cid, "fastpush" if a is None else "bare"))
    else:
        row(goal, cid, f"{a:.2f} vs {b:.2f} ms = {a / b:.2f}x", a / b <= 1.1)
    cid = "publish/w100"
    a, b = med(cid, "fastpush", "pub_per_s"), med(cid, "nginx", "pub_per_s")
    goal = "pipelined publishes/s >= push-stream's"
    if a is None or b is None or b <= 0:
        row(goal, cid, "", None, why_na(cid, "fastpush" if a is None else "nginx"))
    else:
        row(goal, cid, f"{a:,.0f} vs {b:,.0f} = {a / b:.2f}x", a / b >= 1)
    for c in caps or [None]:
        cid = c["id"] if c else "capacity"
        goal = "connect rate >= push-stream's"
        a, b = med(cid, "fastpush", "connect_per_s"), med(cid, "nginx", "connect_per_s")
        if a is None or b is None or b <= 0:
            row(goal, cid, "", None, why_na(cid, "fastpush" if a is None else "nginx"))
        else:
            row(goal, cid, f"{a:,.0f} vs {b:,.0f}/s = {a / b:.2f}x", a / b >= 1)
    million = [c for c in cells.values() if c["scenario"] == "million"]
    for c in million or [None]:
        cid = c["id"] if c else "million"
        goal = (
            "1M subscribers held, < 1.5 GB server memory, 10-message burst p99 "
            f"< half push-stream's {scenarios.PUSHSTREAM_MILLION_P99_S:g} s"
        )
        held, mem, p99 = (
            med(cid, "fastpush", "held"),
            med(cid, "fastpush", "mem_gib"),
            med(cid, "fastpush", "burst_p99_s"),
        )
        if held is None or mem is None or p99 is None:
            row(goal, cid, "", None, why_na(cid, "fastpush"))
        else:
            n = c["params"]["n"] if c else 0
            row(
                goal,
                cid,
                f"{held:,.0f} held, {mem * 1.073741824:.2f} GB, p99 {p99:.1f} s",
                held >= n
                and mem * 1.073741824 < 1.5
                and p99 < scenarios.PUSHSTREAM_MILLION_P99_S / 2,
            )
    return rows


# ---------------------------------------------------------------- aggregation


def aggregate(
    cell: Cell, runs: list[dict[str, Any]], skipped: dict[str, str]
) -> dict[str, Any]:
    """Medians (and min/max) per target over the runs that passed their checks.

    A target whose every run failed a check still gets medians, from all its
    runs, marked checked=False (shown with a dagger in the report).
    """
    out: dict[str, Any] = {
        "type": "cell",
        "id": cell.id,
        "scenario": cell.scenario,
        "title": cell.title,
        "params": cell.params,
        "metrics": list(cell.metrics),
        "targets": {},
    }
    names = sorted({r["target"] for r in runs} | set(skipped), key=_target_order)
    for t in names:
        if t in skipped:
            out["targets"][t] = {"skipped": skipped[t]}
            continue
        mine = [r for r in runs if r["target"] == t]
        good = [r for r in mine if r.get("ok")]
        use = good or [r for r in mine if r.get("metrics")]
        entry: dict[str, Any] = {
            "runs": len(mine),
            "ok": len(good),
            "checked": bool(good),
            "median": {},
            "min": {},
            "max": {},
        }
        if not use:
            errs = [r.get("error") or "; ".join(r.get("problems", [])) for r in mine]
            entry["error"] = (errs[-1] if errs else "no run")[:300]
        else:
            keys = sorted({k for r in use for k in r["metrics"]})
            for k in keys:
                vals = [r["metrics"][k] for r in use if k in r["metrics"]]
                entry["median"][k] = statistics.median(vals)
                entry["min"][k] = min(vals)
                entry["max"][k] = max(vals)
            bad = [r for r in mine if not r.get("ok")]
            if bad:
                entry["problems"] = [
                    (r.get("error") or "; ".join(r.get("problems", [])))[:200]
                    for r in bad
                ]
        out["targets"][t] = entry
    fp = out["targets"].get("fastpush", {}).get("median", {})
    ratios: dict[str, dict[str, float]] = {}
    for k in cell.metrics:
        if k in NO_RATIO:
            continue
        for t, e in out["targets"].items():
            if t == "fastpush" or k not in fp:
                continue
            v = e.get("median", {}).get(k)
            if v:
                ratios.setdefault(k, {})[t] = fp[k] / v
    out["ratios"] = ratios
    return out


def _target_order(name: str) -> int:
    return TARGETS.index(name) if name in TARGETS else len(TARGETS)


# ---------------------------------------------------------------- report


def fmt_metric(k: str, v: float | None) -> str:
    if v is None:
        return ""
    return METRICS.get(k, ("", "", "", "{:,.3g}"))[3].format(v)


def _machine_lines(meta: dict[str, Any]) -> list[str]:
    m = meta["machine"]
    sc = m.get("sysctl", {})
    lines = [
        f"- command: `{meta['command']}`",
        f"- date: {meta['started']} (took {meta.get('took', '?')})",
        f"- machine: {m['cpu']}, {m['ncpu']} CPUs, {m['mem_total_kb'] // 1024:,} MiB,"
        f" kernel {m['kernel']}, Python {m['python']}",
        "- kernel settings: " + ", ".join(f"{k}={v}" for k, v in sc.items()),
        f"- open files per process: {m['nofile'][0]:,} (hard {m['nofile'][1]:,})",
        f"- load average at start / end: {meta['loadavg_start']} / "
        f"{meta.get('loadavg_end', '?')}",
        f"- profile: {meta['profile']}, {meta['repeat']} rounds per cell"
        + (
            f" ({meta['goal_rounds']} for the two targets a goal compares)"
            if meta.get("goal_rounds", 0) > meta["repeat"]
            else ""
        )
        + ", targets alternated (the first target rotates every round)",
        f"- loadgen: `{meta['loadgen_cflags']}`; subscriber processes "
        f"{meta['flags'].get('loadgen_procs') or 'auto (2, or one per 15k)'}"
        + ("; under SCHED_BATCH" if meta["flags"].get("loadgen_batch") else ""),
    ]
    for t in meta["targets"]:
        desc = {
            k: v
            for k, v in t.items()
            if k not in ("name", "label", "unavailable") and v
        }
        lines.append(
            f"- {t['label']}: "
            + ", ".join(
                f"{k} `{v if isinstance(v, str) else shlex.join(v)}`"
                for k, v in desc.items()
            )
            + (f" — **skipped: {t['unavailable']}**" if t.get("unavailable") else "")
        )
    return lines


def report_md(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    labels = {t["name"]: t["label"] for t in meta["targets"]}
    names = [t["name"] for t in meta["targets"]]
    others = [n for n in names if n != "fastpush"]
    out = ["# fastpush benchmark suite", ""]
    out += _machine_lines(meta)
    out += ["", "## Targets from the benchmark issue", ""]
    out += [
        "| goal | cell | measured (fastpush vs other) | verdict |",
        "|---|---|---|---|",
    ]
    for v in summary["verdicts"]:
        note = f" ({v['note']})" if v["note"] else ""
        out.append(
            f"| {v['goal']} | `{v['cell']}` | {v['measured']}{note} | {v['verdict']} |"
        )
    by_scn: dict[str, list[dict[str, Any]]] = {}
    for c in summary["cells"].values():
        by_scn.setdefault(c["scenario"], []).append(c)
    heads = {
        "capacity": "Capacity: idle subscribers",
        "fanout": "Fan-out",
        "publish": "Publish rate",
        "churn": "Churn",
        "modes": "Subscriber modes",
        "million": "One million subscribers",
    }
    for scn in SCENARIOS:
        cells = by_scn.get(scn)
        if not cells:
            continue
        out += ["", f"## {heads[scn]}", ""]
        cols = ["cell", "metric"] + [labels[n] for n in names]
        cols += [f"fastpush ÷ {labels[n]}" for n in others]
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for c in cells:
            first = True
            for k in c["metrics"]:
                vals = []
                for n in names:
                    e = c["targets"].get(n, {})
                    v = e.get("median", {}).get(k)
                    s = fmt_metric(k, v)
                    if v is not None and not e.get("checked", True):
                        s += " †"
                    elif v is not None and e.get("ok", 0) < e.get("runs", 0):
                        s += f" ({e['ok']}/{e['runs']})"
                    if v is None and e.get("skipped"):
                        s = "skip"
                    elif v is None and e.get("error"):
                        s = "fail"
                    vals.append(s)
                rat = [
                    f"{c['ratios'][k][n]:.2f}x" if n in c["ratios"].get(k, {}) else ""
                    for n in others
                ]
                label, unit = METRICS[k][0], METRICS[k][1]
                mname = f"{label} ({unit})" if unit else label
                cell = f"`{c['id']}`<br>{c['title']}" if first else ""
                out.append("| " + " | ".join([cell, mname] + vals + rat) + " |")
                first = False
    out += [
        "",
        "Medians over the runs that passed every check (all subscribers ready, every "
        "message delivered once and in order, every publish answered 2xx); "
        "(k/n): only k of n runs passed; †: no run passed, median of all runs; "
        "skip/fail: see below. Ratios are fastpush's median over the other's; for "
        "rates higher is better, for CPU, memory and latency lower is better.",
    ]
    notes = _notes(summary)
    if notes:
        out += ["", "## Skipped, failed and suspect runs", ""] + notes
    base = summary.get("baseline")
    if base:
        out += ["", "## Against bench/baseline.json", ""]
        out += [base["note"], ""]
        if base.get("rows"):
            out += [
                "| cell | what | baseline | now | change |",
                "|---|---|---|---|---|",
            ]
            for r in base["rows"]:
                out.append(
                    f"| `{r['cell']}` | {r['what']} | {r['base']} | {r['now']} | "
                    f"{r['change']:+.0%}{' ⚠' if r['worse'] else ''} |"
                )
    plots = summary.get("plots") or []
    if plots:
        out += ["", "## Plots", ""] + [
            f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots
        ]
    return "\n".join(out) + "\n"


def _notes(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    reasons: dict[str, list[str]] = {}
    for c in summary["cells"].values():
        for t, e in c["targets"].items():
            if e.get("skipped"):
                reasons.setdefault(f"{t}: {e['skipped']}", []).append(c["id"])
            elif e.get("error"):
                lines.append(f"- `{c['id']}` {t}: failed — {e['error']}")
            for p in e.get("problems", []):
                lines.append(f"- `{c['id']}` {t}: a run failed a check — {p}")
    for why, ids in reasons.items():
        lines.append(
            f"- skipped {why} ({len(ids)} cells: "
            + ", ".join(f"`{i}`" for i in ids[:6])
            + (", …" if len(ids) > 6 else "")
            + ")"
        )
    for s in summary.get("suspects", []):
        lines.append(f"- {s}")
    return lines


# ---------------------------------------------------------------- baseline


def compare_baseline(
    summary: dict[str, Any], path: str, tolerance: float
) -> dict[str, Any] | None:
    """fastpush's medians and ratios against the committed baseline's."""
    try:
        with open(path) as f:
            base_all = json.load(f)
    except (OSError, ValueError):
        return {"note": f"no baseline at {path}", "rows": []}
    prof = summary["meta"]["profile"]
    base = base_all.get("profiles", {}).get(prof)
    if not base:
        return {"note": f"{path} has no '{prof}' profile", "rows": []}
    rows = []
    for cid, c in summary["cells"].items():
        bc = base["cells"].get(cid)
        if not bc:
            continue
        for k in c["metrics"]:
            better = METRICS[k][2]
            now = c["targets"].get("fastpush", {}).get("median", {}).get(k)
            was = bc.get("fastpush", {}).get(k)
            if now is not None and was:
                ch = now / was - 1
                worse = ch < -tolerance if better == "higher" else ch > tolerance
                rows.append(
                    {
                        "cell": cid,
                        "what": f"fastpush {METRICS[k][0]}",
                        "base": fmt_metric(k, was),
                        "now": fmt_metric(k, now),
                        "change": ch,
                        "worse": worse,
                    }
                )
            for t, r in c["ratios"].get(k, {}).items():
                was_r = base.get("ratios", {}).get(cid, {}).get(k, {}).get(t)
                if not was_r:
                    continue
                ch = r / was_r - 1
                worse = ch < -tolerance if better == "higher" else ch > tolerance
                rows.append(
                    {
                        "cell": cid,
                        "what": f"{METRICS[k][0]}: fastpush ÷ {t}",
                        "base": f"{was_r:.2f}x",
                        "now": f"{r:.2f}x",
                        "change": ch,
                        "worse": worse,
                    }
                )
    nworse = sum(r["worse"] for r in rows)
    note = (
        f"Baseline from {base.get('created', '?')} "
        f"({base.get('machine', {}).get('cpu', '?')}, "
        f"`{base.get('command', '?')}`). {len(rows)} figures compared, {nworse} worse "
        f"by more than {tolerance:.0%} (⚠). Ratios travel between machines better "
        "than absolute figures; on a shared machine expect ±25% run to run."
    )
    shown = (
        [r for r in rows if r["worse"] or abs(r["change"]) > tolerance]
        if len(rows) > 40
        else rows
    )
    return {"note": note, "rows": shown, "compared": len(rows), "worse": nworse}


def baseline_entry(summary: dict[str, Any]) -> dict[str, Any]:
    meta = summary["meta"]
    return {
        "created": meta["started"],
        "command": meta["command"],
        "machine": {
            k: meta["machine"][k] for k in ("cpu", "ncpu", "kernel", "mem_total_kb")
        },
        "targets": {
            t["name"]: t.get("version") or t.get("git") or "" for t in meta["targets"]
        },
        "cells": {
            cid: {
                t: {k: round(v, 6) for k, v in e.get("median", {}).items()}
                for t, e in c["targets"].items()
                if e.get("median")
            }
            for cid, c in summary["cells"].items()
        },
        "ratios": {
            cid: {
                k: {t: round(r, 4) for t, r in v.items()}
                for k, v in c["ratios"].items()
            }
            for cid, c in summary["cells"].items()
        },
        "verdicts": [
            {k: v[k] for k in ("goal", "cell", "measured", "verdict")}
            for v in summary["verdicts"]
        ],
    }


# ---------------------------------------------------------------- progress


class Progress:
    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.walls: dict[str, list[float]] = {}
        self.stream = stream

    @staticmethod
    def _hms(s: float) -> str:
        s = int(s)
        return (
            f"{s // 3600}h{s // 60 % 60:02d}m"
            if s >= 3600
            else f"{s // 60}m{s % 60:02d}s"
        )

    def eta(self, pending: list[tuple[str, str]]) -> str:
        if not self.done:
            return "?"
        avg = (time.monotonic() - self.t0) / self.done
        left = sum(
            statistics.median(self.walls[k]) if self.walls.get(k) else avg
            for k in (f"{c}|{t}" for c, t in pending)
        )
        return self._hms(left)

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def run_done(self, cell: str, target: str, wall: float) -> None:
        self.done += 1
        self.walls.setdefault(f"{cell}|{target}", []).append(wall)

    def prefix(self, pending: list[tuple[str, str]]) -> str:
        return (
            f"[{self.done + 1:>3}/{self.total} {self._hms(time.monotonic() - self.t0)}"
            f" eta {self.eta(pending)}]"
        )


BRIEF = (
    ("deliveries_per_s", "deliv/s"),
    ("cpu_s_per_M", "CPU s/M"),
    ("lat_p99_ms", "p99 ms"),
    ("pub_per_s", "pub/s"),
    ("churn_per_s", "churn/s"),
    ("mem_private_per_sub", "B/sub"),
    ("connect_per_s", "conn/s"),
)


def run_brief(res: dict[str, Any]) -> str:
    m = res.get("metrics", {})
    parts = [f"{lab} {fmt_metric(k, m[k])}" for k, lab in BRIEF if k in m]
    lg = res.get("loadgen") or {}
    if lg:
        parts.append(f"loadgen {lg['sub_s']:.2f}+{lg['pub_s']:.2f} s")
    return ", ".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    ap.add_argument("--quick", action="store_true", help="the few-minute profile")
    ap.add_argument(
        "--repeat", type=int, default=3, help="rounds per cell (>= 3 for a median)"
    )
    ap.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma list of " + ",".join(TARGETS),
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma list of " + ",".join(SCENARIOS),
    )
    ap.add_argument(
        "--only", default="", help="regex on cell ids, e.g. 'fanout/.*/n1000/'"
    )
    ap.add_argument(
        "--nginx",
        default=os.environ.get("FASTPUSH_BENCH_NGINX", ""),
        help="nginx binary built with push-stream (env FASTPUSH_BENCH_NGINX); "
        "without it push-stream is skipped",
    )
    ap.add_argument(
        "--nchan-nginx",
        default=os.environ.get("FASTPUSH_BENCH_NCHAN_NGINX", ""),
        help="nginx binary that loads Debian's Nchan module (default: try "
        f"{scenarios.NCHAN_NGINX}, then --nginx)",
    )
    ap.add_argument(
        "--bare-nagle",
        action="store_true",
        help="run the bare server with Nagle's algorithm on (default: TCP_NODELAY, "
        "as fastpush)",
    )
    ap.add_argument(
        "--fastpush-cmd", default="", help="command that runs the fastpush CLI"
    )
    ap.add_argument(
        "--loadgen-procs",
        type=int,
        default=0,
        help="loadgen subscriber processes (0: auto)",
    )
    ap.add_argument("--pin-server", default="", help="taskset CPU list for servers")
    ap.add_argument("--pin-loadgen", default="", help="taskset CPU list for loadgen")
    ap.add_argument(
        "--loadgen-batch",
        action="store_true",
        help="run loadgen under SCHED_BATCH, so its wakeups do not preempt the server",
    )
    ap.add_argument(
        "--out", default="", help="output dir (default bench/out/<date-time>)"
    )
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument(
        "--update-baseline",
        action="store_true",
        help="write this run's medians into --baseline",
    )
    ap.add_argument(
        "--tolerance", type=float, default=0.25, help="baseline change flagged as worse"
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--keep-dir", action="store_true", help="keep servers' temp dirs")
    ap.add_argument("--list", action="store_true", help="list the cells and exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def loadgen_cflags() -> str:
    try:
        with open(os.path.join(common.BENCH_DIR, "Makefile")) as f:
            for line in f:
                if line.startswith("CFLAGS"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ""


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_one(
    ctx: scenarios.RunCtx,
    t: Target,
    cell: Cell,
    rnd: int,
    progress: Progress,
    pre: str,
) -> dict[str, Any]:
    """One run of cell against t; a failure becomes an ok=False record."""
    t0 = time.monotonic()
    try:
        res = scenarios.run_cell(ctx, t, cell)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one failed run must not end the suite
        res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:1000]}
    wall = time.monotonic() - t0
    progress.run_done(cell.id, t.name, wall)
    rec = {
        "type": "run",
        "cell": cell.id,
        "scenario": cell.scenario,
        "target": t.name,
        "round": rnd + 1,
        "params": cell.params,
        "wall_s": round(wall, 2),
        **res,
    }
    status = "ok " if res.get("ok") else "BAD"
    detail = run_brief(res) if res.get("metrics") else ""
    why = res.get("error") or "; ".join(res.get("problems", []))
    progress.line(
        f"{pre} {cell.id:30} {t.name:8} r{rnd + 1} {status} {wall:5.1f}s  {detail}"
        + (f"  !! {why[:300]}" if why else "")
    )
    lg = res.get("loadgen") or {}
    share = max(lg.get("sub_core_share") or 0, lg.get("pub_core_share") or 0)
    if share > 0.85:
        rec["suspect"] = (
            f"`{cell.id}` {t.name} round {rnd + 1}: a loadgen process used "
            f"{share:.0%} of a core: the load generator may have limited this run"
        )
        progress.line("   " + rec["suspect"])
    return rec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prof = scenarios.PROFILES["quick" if args.quick else "full"]
    want_scn = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    cells = [c for c in scenarios.build_cells(prof) if c.scenario in want_scn]
    if args.only:
        cells = [c for c in cells if re.search(args.only, c.id)]
    if args.list:
        for c in cells:
            print(f"{c.id:36} {c.title}")
        return 0
    if args.repeat < 3:
        print(
            f"suite: --repeat {args.repeat}: fewer than 3 rounds, medians are weak",
            file=sys.stderr,
        )

    common.raise_nofile()
    common.build_tools()
    fp_cmd = (
        shlex.split(args.fastpush_cmd)
        if args.fastpush_cmd
        else common.fastpush_command()
    )
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    targets = scenarios.make_targets(
        names, args.nginx, args.nchan_nginx, fp_cmd, args.bare_nagle
    )
    unavailable = {t.name: t.unavailable() for t in targets}

    started = dt.datetime.now()
    out_dir = args.out or os.path.join(OUT_DIR, started.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    if not args.out:
        link = os.path.join(OUT_DIR, "latest")
        try:
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(os.path.basename(out_dir), link)
        except OSError:
            pass
    jsonl = open(os.path.join(out_dir, "results.jsonl"), "w")

    def emit(obj: dict[str, Any]) -> None:
        jsonl.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
        jsonl.flush()

    meta: dict[str, Any] = {
        "type": "meta",
        "command": shlex.join(
            [os.path.relpath(sys.argv[0]) if sys.argv else "bench/suite.py"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "started": started.isoformat(timespec="seconds"),
        "profile": prof.name,
        "repeat": args.repeat,
        "goal_rounds": prof.goal_rounds,
        "flags": vars(args),
        "machine": common.machine_info(),
        "loadavg_start": loadavg(),
        "loadgen_cflags": loadgen_cflags(),
        "platform": platform.platform(),
        "targets": [
            {**t.describe(), "unavailable": unavailable[t.name]} for t in targets
        ],
    }
    sc = meta["machine"]["sysctl"]
    for name in (
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_fin_timeout",
        "net.core.netdev_max_backlog",
    ):
        v = common._read("/proc/sys/" + name.replace(".", "/"))
        if v:
            sc[name] = v
    emit(meta)
    progress = Progress(0)
    for t in targets:
        if unavailable[t.name]:
            progress.line(f"suite: {t.label} skipped: {unavailable[t.name]}")

    def rounds(c: Cell, target: str) -> int:
        n = args.repeat
        if target in c.params.get("goal_targets", ()):
            n = max(n, c.params.get("goal_rounds", n))
        # the 1M cell takes minutes and is run once
        return min(n, c.params.get("rounds", n))

    # plan: which targets run which cell; the reasons for the others
    plan: list[tuple[Cell, list[Target], dict[str, str]]] = []
    for c in cells:
        run_t, skip = [], {}
        for t in targets:
            only = c.params.get("only")
            why = (
                unavailable[t.name]
                or (only and t.name not in only and f"run for {', '.join(only)} only")
                or t.cannot(c.params.get("mode", "stream"), c.spec())
            )
            if why:
                skip[t.name] = why
            else:
                run_t.append(t)
        plan.append((c, run_t, skip))
    pending = [
        (c.id, t.name)
        for c, ts, _ in plan
        for t in ts
        for _ in range(rounds(c, t.name))
    ]
    progress.total = len(pending)
    progress.line(
        f"suite: {prof.name} profile, {len(cells)} cells, {progress.total} runs, "
        f"{args.repeat} rounds ({max(args.repeat, prof.goal_rounds)} for a goal's "
        f"pair); output {out_dir}"
    )
    ctx = scenarios.RunCtx(
        log=progress.line,
        verbose=args.verbose,
        keep_dir=args.keep_dir,
        pin_server=args.pin_server,
        pin_loadgen=args.pin_loadgen,
        loadgen_batch=args.loadgen_batch,
        loadgen_procs=args.loadgen_procs,
    )
    summary: dict[str, Any] = {"meta": meta, "cells": {}}
    suspects: list[str] = []
    interrupted = False
    try:
        for ci, (cell, run_t, skip) in enumerate(plan):
            runs: list[dict[str, Any]] = []
            for t, why in skip.items():
                emit(
                    {
                        "type": "run",
                        "cell": cell.id,
                        "scenario": cell.scenario,
                        "target": t,
                        "skipped": why,
                    }
                )
            for rnd in range(max((rounds(cell, t.name) for t in run_t), default=0)):
                # alternate: each round (and each cell) starts with another target
                k = (rnd + ci) % max(len(run_t), 1)
                for t in run_t[k:] + run_t[:k]:
                    if rnd >= rounds(cell, t.name):
                        continue  # its rounds are done; the goal's pair goes on
                    pre = progress.prefix(pending)
                    rec = run_one(ctx, t, cell, rnd, progress, pre)
                    pending.remove((cell.id, t.name))
                    emit(rec)
                    runs.append(rec)
                    if rec.get("suspect"):
                        suspects.append(rec["suspect"])
            agg = aggregate(cell, runs, skip)
            summary["cells"][cell.id] = agg
            emit(agg)
            progress.line(cell_brief(agg))
    except KeyboardInterrupt:
        interrupted = True
        progress.line("suite: interrupted; reporting what ran")
    finally:
        jsonl.close()

    meta["loadavg_end"] = loadavg()
    meta["took"] = Progress._hms((dt.datetime.now() - started).total_seconds())
    meta["interrupted"] = interrupted
    summary["suspects"] = suspects
    summary["verdicts"] = _verdict_rows(summary)
    summary["baseline"] = compare_baseline(summary, args.baseline, args.tolerance)
    if not args.no_plots:
        try:
            import plot

            summary["plots"] = plot.plot_all(summary, out_dir)
        except ImportError as e:
            progress.line(
                f"suite: no plots ({e}; pip install -r bench/requirements.txt)"
            )
    md = report_md(summary)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    if args.update_baseline and not interrupted:
        try:
            with open(args.baseline) as f:
                base = json.load(f)
        except (OSError, ValueError):
            base = {}
        if base and "profiles" not in base:
            progress.line(f"suite: {args.baseline} is not a suite baseline; left alone")
            return 2
        base.setdefault(
            "about",
            "Medians and ratios from bench/suite.py runs; compared with every new run. "
            "Rewrite one profile with --update-baseline.",
        )
        base.setdefault("profiles", {})[prof.name] = baseline_entry(summary)
        with open(args.baseline, "w") as f:
            json.dump(base, f, indent=1, sort_keys=False)
            f.write("\n")
        progress.line(f"suite: wrote the '{prof.name}' profile of {args.baseline}")
    print(md)
    progress.line(f"suite: results in {out_dir}")
    failed = any(
        e.get("ok", 1) < e.get("runs", 0) or e.get("error")
        for c in summary["cells"].values()
        for e in c["targets"].values()
    )
    return 130 if interrupted else (1 if failed else 0)


def cell_brief(agg: dict[str, Any]) -> str:
    lines = [f"  == {agg['id']}: {agg['title']}"]
    for k in agg["metrics"]:
        vals = []
        for t, e in agg["targets"].items():
            v = e.get("median", {}).get(k)
            if v is not None:
                vals.append(f"{t} {fmt_metric(k, v)}")
        if not vals:
            continue
        rat = ", ".join(f"÷{t} {r:.2f}x" for t, r in agg["ratios"].get(k, {}).items())
        lines.append(
            f"     {METRICS[k][0]:32} "
            + " | ".join(vals)
            + (f"   [{rat}]" if rat else "")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(main())
