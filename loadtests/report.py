"""`make bench`: every benchmark figure of this machine in one run, written as a report.

    python -m loadtests.report [--out bench-results] [--quick]

Writes `<out>/report.md`: the targets judged (loadtests/targets.py), then every figure
beside its ceiling measured in the same run, as a ratio (the bestseller stream beside the
uniform one, the recovery of 1,000,000 positions and 5,000,000 event ids, a
1,000,000-row ERP snapshot's import beside the event ingest of each mode, and a SKU at
5,000 stores beside a SKU at 8 locations too), and
three plots: hold latency against load, stream events/s against workers, and the fan-out's
convergence after a burst.
Needs Kafka and Redis on 127.0.0.1 (scripts/services.sh) and wrk (installed with apt when
missing). About 15 minutes; `--quick` runs smaller workloads (about 6) for a look, not for
the record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after the backend is chosen

from .bench import bench_embedded
from .bench_fanout import bench_fanout
from .bench_holds import bench_holds, hold_latency_by_rate
from .bench_recovery import Options as RecoveryOptions
from .bench_recovery import bench_recovery
from .bench_snapshots import bench_snapshots
from .bench_streaming import bench_streaming, events_per_second_by_workers
from .bench_wide import bench_wide
from .targets import judge_targets

Rows = list[tuple[str, str, str]]


def redis_ceiling() -> Rows:
    """redis-benchmark GET, and MGET of 100 keys (a batch read's shape), on the same Redis:
    what the streaming read path stands on."""
    base = ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-q", "--csv"]
    mget = ["MGET", *(f"bench:key:{n}" for n in range(100))]
    rows = []
    for name, command in (
        ("GET", ["-t", "get", "-n", "100000"]),
        ("MGET 100", ["-n", "20000", *mget]),
    ):
        output = subprocess.run(
            [*base, *command], capture_output=True, text=True, check=True, timeout=300
        ).stdout
        rps = float(re.findall(r'^"[^"]+","([\d.]+)"', output, re.MULTILINE)[-1])
        rows.append((f"redis-benchmark {name} (ceiling)", f"{rps:,.0f}", "requests/s, 50 clients"))
    return rows


def plot_latency(points: Sequence[tuple[int, float, float]], path: Path) -> None:
    rates = [rate for rate, _, _ in points]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(rates, [p50 for _, p50, _ in points], marker="o", label="p50")
    axes.plot(rates, [p99 for _, _, p99 in points], marker="o", label="p99")
    axes.axhline(50, color="grey", linestyle="--", label="target p99 50 ms")
    axes.set(
        xlabel="holds/s offered (open loop)",
        ylabel="hold latency (ms)",
        title="Checkout hold latency against load (streaming, 1 worker)",
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_workers(points: Sequence[tuple[int, float, float]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([n for n, _, _ in points], [rate for _, rate, _ in points], marker="o")
    axes.set(
        xlabel="workers",
        ylabel="events/s, produce -> table -> Redis",
        title="Stream throughput against workers (2-core machine)",
    )
    axes.set_xticks([n for n, _, _ in points])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_convergence(series: Sequence[tuple[float, int]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([t for t, _ in series], [wrong for _, wrong in series])
    axes.set(
        xlabel="seconds after the burst's last 202",
        ylabel="SKUs whose feed value is not current",
        title="Fan-out convergence after a burst (embedded, 500 items/s)",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def table(title: str, rows: Rows) -> str:
    lines = [f"### {title}", "", "| figure | measured | beside it |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {note} |" for name, value, note in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench-results", help="folder for the report")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a look")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    sections: list[str] = []
    measured: Rows = []

    def section(title: str, rows: Rows) -> None:
        measured.extend(rows)
        sections.append(table(title, rows))
        print(sections[-1], flush=True)

    section(
        "Embedded mode",
        bench_embedded(5_000 if quick else 20_000, 50 if quick else 200, 5 if quick else 10),
    )
    section("Streaming mode", bench_streaming(40_000 if quick else 200_000))
    convergence: list[tuple[float, int]] = []
    section(
        "Fan-out",
        bench_fanout(2_000 if quick else 5_000, 20_000 if quick else 100_000, 500, convergence),
    )
    section("Checkout holds", bench_holds(8 if quick else 15))
    section(
        "A SKU at 5,000 stores",
        bench_wide(events=1_000 if quick else 3_000, seconds=4 if quick else 8),
    )
    section("Recovery", bench_recovery(RecoveryOptions(positions=200_000 if quick else 1_000_000)))
    section("ERP snapshots", bench_snapshots(200_000 if quick else 1_000_000))
    section("Ceilings", redis_ceiling())

    rates = [50, 100, 200, 400] if quick else [50, 100, 200, 400, 600, 800]
    latency = hold_latency_by_rate(rates, 6 if quick else 12)
    workers = events_per_second_by_workers([1, 2], 20_000 if quick else 60_000)
    plot_latency(latency, out / "hold-latency-vs-load.png")
    plot_workers(workers, out / "events-vs-workers.png")
    plot_convergence(convergence, out / "fanout-convergence.png")
    sections.append(
        table(
            "Hold latency against load",
            [
                (f"{rate:,} holds/s offered", f"p50 {p50:.1f} ms", f"p99 {p99:.1f} ms")
                for rate, p50, p99 in latency
            ],
        )
        + "\n![hold latency against load](hold-latency-vs-load.png)\n"
    )
    sections.append(
        table(
            "Stream throughput against workers",
            [
                (
                    f"{n} worker{'s' if n > 1 else ''}",
                    f"{rate:,.0f} events/s",
                    f"{rate / ceiling:.1%} of raw aiokafka consume ({ceiling:,.0f}/s)",
                )
                for n, rate, ceiling in workers
            ],
        )
        + "\n![events/s against workers](events-vs-workers.png)\n"
    )
    sections.append("### Fan-out convergence\n\n![fan-out convergence](fanout-convergence.png)\n")
    header = (
        f"# Benchmark report\n\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on"
        f" {platform.node()} ({platform.processor() or platform.machine()},"
        f" Python {platform.python_version()}){' — quick run' if quick else ''}.\n"
        "Figures of a shared, noisy 2-core machine: compare ratios within this run, not"
        " figures across runs.\n"
    )
    sections.insert(0, table("Targets", judge_targets(measured)))
    (out / "report.md").write_text(header + "\n" + "\n".join(sections))
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
