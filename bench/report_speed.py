"""How long the results store and the report take at realistic size.

Prints: the store write time of one YOLOv5-Lite-sized deploy (7 formats x 2 targets x 2 thread counts, every
sample kept), then the time to build and write the report for 30 nights x 2 targets x 7 formats (target:
under 10 s), split into reading the store, regression detection, plots + HTML, and Markdown.

    .venv/bin/python bench/report_speed.py [--nights 30] [--repeat 50]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgekit.report import html, markdown
from edgekit.report.regression import detect
from edgekit.report.synthetic import synthetic_history
from edgekit.report.view import build
from edgekit.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=50, help="samples per artifact x threads")
    args = parser.parse_args()

    history = synthetic_history(
        args.nights, seed=0, repeat=args.repeat, threads=(1, 4), last_slowdown={("tflite-int8", "pi4"): 1.1}
    )
    samples = sum(len(m.samples_ms) for t in history[0].runs for m in t.agent.measurements)  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'results.sqlite'}"
        with open_store(url) as store:
            writes = []
            for result in history:
                start = time.perf_counter()
                store.record(result)
                writes.append(time.perf_counter() - start)
        print(
            f"store write, one deploy ({len(history[0].runs)} targets x 14 measurements, {samples} samples): "
            f"median {statistics.median(writes) * 1000:.1f} ms, max {max(writes) * 1000:.1f} ms "
            f"(SQLite WAL, synchronous=FULL)"
        )
        size = (Path(tmp) / "results.sqlite").stat().st_size + sum(
            p.stat().st_size for p in Path(tmp).glob("results.sqlite-*")
        )
        print(f"store size after {args.nights} nights: {size / 1e6:.1f} MB")

        with open_store(url) as store:
            c0 = time.process_time()
            t0 = time.perf_counter()
            runs = store.history()
            t1 = time.perf_counter()
            flags = detect(runs)
            t2 = time.perf_counter()
            report = build(store)
            t3 = time.perf_counter()
        page = html.render(report)
        t4 = time.perf_counter()
        markdown.render(report)
        t5 = time.perf_counter()
        cpu = time.process_time() - c0
        cli = [
            sys.executable,
            "-m",
            "edgekit",
            "report",
            "--since",
            "all",
            "--store",
            url,
            "--html",
            str(Path(tmp) / "r.html"),
            "--markdown",
            str(Path(tmp) / "r.md"),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cli, check=True, capture_output=True)
        t6 = time.perf_counter()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"report, {args.nights} nights x 2 targets x 7 formats x 2 thread counts: {t5 - t2:.2f} s "
        f"as `edgekit report --html --markdown` does it (target < 10 s)"
    )
    print(
        f"  of which: read store + regression check {t3 - t2:.2f} s, plots + HTML {t4 - t3:.2f} s "
        f"({len(page) / 1e6:.2f} MB), Markdown {t5 - t4:.3f} s; separately: read {args.nights} runs "
        f"{t1 - t0:.2f} s, regression check alone {t2 - t1:.3f} s"
    )
    print(f"  CPU time of this process for all of the above: {cpu:.2f} s (wall time grows with other load)")
    print(
        f"  the same through the command line, start-up and imports included: {t6 - t5:.2f} s wall, "
        f"{cli_cpu:.2f} s CPU"
    )
    print(f"  flags: {[f.message for f in flags]}")


if __name__ == "__main__":
    main()
