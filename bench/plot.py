#!/usr/bin/env python3
"""PNG plots of a bench/suite.py run (pip install -r bench/requirements.txt).

  python bench/plot.py bench/out/latest/summary.json     # writes next to it
  python bench/plot.py SUMMARY.json --out DIR

From the suite's summary (medians per cell and target, min-max as error bars):
  fanout_throughput.png  deliveries/s against subscribers, back to back, per channels
  fanout_latency.png     p50 and p99 latency against subscribers, paced publishing
  fanout_cpu.png         server CPU seconds per 1M deliveries against subscribers
  memory.png             server and kernel memory per idle subscriber
  modes.png              deliveries/s and p99 latency per subscriber mode
  rates.png              publishes/s (keep-alive, pipelined), connects/s, churn
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "fastpush": {"color": "#d62728", "marker": "o"},
    "nginx": {"color": "#1f77b4", "marker": "s"},
    "nchan": {"color": "#2ca02c", "marker": "^"},
    "bare": {"color": "#7f7f7f", "marker": "D", "linestyle": "--"},
}


def _labels(summary: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["label"] for t in summary["meta"]["targets"]}


def _cells(summary: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [c for c in summary["cells"].values() if c["scenario"] == scenario]


def _stat(c: dict[str, Any], t: str, k: str) -> tuple[float, float, float] | None:
    e = c["targets"].get(t, {})
    if k not in e.get("median", {}):
        return None
    return e["median"][k], e["min"][k], e["max"][k]


def _series(
    summary: dict[str, Any], pub: str, k: int, metric: str
) -> dict[str, list[tuple[int, float, float, float]]]:
    """target -> [(subscribers, median, min, max)] for fan-out cells."""
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    for c in _cells(summary, "fanout"):
        if c["params"]["k"] != k or c["id"].rsplit("/", 1)[1] != pub:
            continue
        for t in c["targets"]:
            s = _stat(c, t, metric)
            if s:
                out.setdefault(t, []).append((c["params"]["n"], *s))
    return {t: sorted(v) for t, v in out.items()}


def _line(
    ax: Any, series: dict[str, Any], labels: dict[str, str], scale: float = 1
) -> bool:
    drawn = False
    for t, pts in series.items():
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [p[1] * scale for p in pts]
        lo = [max(p[1] - p[2], 0) * scale for p in pts]
        hi = [max(p[3] - p[1], 0) * scale for p in pts]
        ax.errorbar(
            xs, ys, yerr=[lo, hi], label=labels.get(t, t), capsize=3, **STYLE.get(t, {})
        )
        drawn = True
    return drawn


def _finish(fig: Any, summary: dict[str, Any], path: str) -> str:
    m = summary["meta"]
    fig.text(
        0.99,
        0.005,
        f"{m['machine']['cpu']}, {m['machine']['ncpu']} CPUs, "
        f"kernel {m['machine']['kernel']}; {m['profile']} profile, "
        f"median of {m['repeat']}, bars min-max; {m['started']}",
        ha="right",
        va="bottom",
        fontsize=7,
        color="#555",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fanout(
    summary: dict[str, Any],
    out: str,
    metric: str,
    pub: str,
    title: str,
    ylabel: str,
    name: str,
    scale: float = 1,
    extra: str | None = None,
) -> str | None:
    labels = _labels(summary)
    ks = sorted({c["params"]["k"] for c in _cells(summary, "fanout")})
    if not ks:
        return None
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 4.5), squeeze=False)
    drawn = False
    for ax, k in zip(axes[0], ks):
        drawn |= _line(ax, _series(summary, pub, k, metric), labels, scale)
        if extra:
            for t, pts in _series(summary, pub, k, extra).items():
                if pts:
                    st = dict(STYLE.get(t, {}))
                    st["linestyle"] = ":"
                    ax.plot(
                        [p[0] for p in pts],
                        [p[1] * scale for p in pts],
                        alpha=0.6,
                        **st,
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribers")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, {k} channel{'s' if k > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return None
    return _finish(fig, summary, os.path.join(out, name))


def plot_memory(summary: dict[str, Any], out: str) -> str | None:
    labels = _labels(summary)
    cells = sorted(_cells(summary, "capacity"), key=lambda c: c["params"]["n"])
    if not cells:
        return None
    fig, axes = plt.subplots(
        1, len(cells), figsize=(6 * len(cells), 4.5), squeeze=False
    )
    drawn = False
    for ax, c in zip(axes[0], cells):
        ts = [t for t in c["targets"] if c["targets"][t].get("median")]
        if not ts:
            continue
        x = range(len(ts))
        w = 0.27
        for i, (k, lab) in enumerate(
            (
                ("mem_private_per_sub", "server private"),
                ("mem_pss_per_sub", "server PSS"),
                ("kernel_per_sub", "kernel (both ends)"),
            )
        ):
            ys = [max(c["targets"][t]["median"].get(k, 0), 1) for t in ts]
            bars = ax.bar([xi + (i - 1) * w for xi in x], ys, w, label=lab)
            for b, y in zip(bars, ys):
                ax.annotate(
                    f"{y:,.0f}",
                    (b.get_x() + b.get_width() / 2, y),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.set_xticks(list(x), [labels.get(t, t) for t in ts])
        ax.set_yscale("log")
        ax.set_ylabel("bytes per idle subscriber")
        ax.set_title(f"{c['params']['n']:,} idle streaming subscribers")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    return _finish(fig, summary, os.path.join(out, "memory.png"))


def _bars(
    ax: Any,
    cells: list[dict[str, Any]],
    metric: str,
    labels: dict[str, str],
    names: list[str],
    xt: list[str],
    scale: float = 1,
) -> bool:
    targets = [t for t in names if any(_stat(c, t, metric) for c in cells)]
    if not targets:
        return False
    w = 0.8 / len(targets)
    for i, t in enumerate(targets):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cells):
            s = _stat(c, t, metric)
            if s:
                xs.append(j + (i - (len(targets) - 1) / 2) * w)
                ys.append(s[0] * scale)
                lo.append(max(s[0] - s[1], 0) * scale)
                hi.append(max(s[2] - s[0], 0) * scale)
        ax.bar(
            xs,
            ys,
            w,
            yerr=[lo, hi],
            capsize=2,
            label=labels.get(t, t),
            color=STYLE.get(t, {}).get("color"),
        )
    ax.set_xticks(range(len(cells)), xt)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return True


def plot_modes(summary: dict[str, Any], out: str) -> str | None:
    labels = _labels(summary)
    names = [t["name"] for t in summary["meta"]["targets"]]
    cells = _cells(summary, "modes")
    if not cells:
        return None
    xt = [c["params"]["mode"] for c in cells]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ok = _bars(axes[0], cells, "deliveries_per_s", labels, names, xt)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("deliveries/s (back to back)")
    axes[0].set_title(f"{cells[0]['params']['n']:,} subscribers per mode")
    ok |= _bars(axes[1], cells, "lat_p99_ms", labels, names, xt)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("p99 latency, ms")
    axes[1].set_title("latency p99 (back to back: includes queueing)")
    if not ok:
        plt.close(fig)
        return None
    return _finish(fig, summary, os.path.join(out, "modes.png"))


def plot_rates(summary: dict[str, Any], out: str) -> str | None:
    labels = _labels(summary)
    names = [t["name"] for t in summary["meta"]["targets"]]
    pub = sorted(_cells(summary, "publish"), key=lambda c: c["params"]["window"])
    cap = sorted(_cells(summary, "capacity"), key=lambda c: c["params"]["n"])
    churn = _cells(summary, "churn")
    panels = [
        (
            pub,
            "pub_per_s",
            "publishes/s",
            [f"{c['params']['window']} in flight" for c in pub],
        ),
        (
            cap,
            "connect_per_s",
            "connects/s",
            [f"{c['params']['n']:,} subs" for c in cap],
        ),
        (
            churn,
            "churn_per_s",
            "churn connects/s",
            [f"{c['params']['n']:,} steady" for c in churn],
        ),
    ]
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False
    )
    drawn = False
    for ax, (cells, metric, yl, xt) in zip(axes[0], panels):
        drawn |= _bars(ax, cells, metric, labels, names, xt)
        ax.set_ylabel(yl)
        ax.set_title(yl)
    if not drawn:
        plt.close(fig)
        return None
    return _finish(fig, summary, os.path.join(out, "rates.png"))


def plot_all(summary: dict[str, Any], out: str) -> list[str]:
    """Every plot the summary has data for; returns the paths written."""
    made = [
        plot_fanout(
            summary,
            out,
            "deliveries_per_s",
            "b2b",
            "back to back",
            "deliveries/s",
            "fanout_throughput.png",
        ),
        plot_fanout(
            summary,
            out,
            "lat_p99_ms",
            "paced",
            "paced, p99 (dotted p50)",
            "latency, ms",
            "fanout_latency.png",
            extra="lat_p50_ms",
        ),
        plot_fanout(
            summary,
            out,
            "cpu_s_per_M",
            "paced",
            "paced",
            "server CPU s per 1M deliveries",
            "fanout_cpu.png",
        ),
        plot_fanout(
            summary,
            out,
            "cpu_s_per_M",
            "b2b",
            "back to back",
            "server CPU s per 1M deliveries",
            "fanout_cpu_b2b.png",
        ),
        plot_memory(summary, out),
        plot_modes(summary, out),
        plot_rates(summary, out),
    ]
    return [p for p in made if p]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summary", help="summary.json written by bench/suite.py")
    ap.add_argument(
        "--out", default="", help="directory for the PNGs (default: the summary's)"
    )
    a = ap.parse_args(argv)
    with open(a.summary) as f:
        summary = json.load(f)
    for p in plot_all(summary, a.out or os.path.dirname(os.path.abspath(a.summary))):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
