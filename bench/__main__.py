"""Run all benchmarks (or those named), print the tables, write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version

from bench import BENCH_DIR, BenchContext, Table

VERSIONED = ("lens", "torch", "ultralytics-opencv-headless", "opencv-contrib-python-headless",
             "onnxruntime", "faiss-cpu", "rapidocr", "fxtranslate", "celery", "flask")


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def package_versions() -> str:
    parts = []
    for name in VERSIONED:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer photos, for a smoke run")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="keep every Nth photo of each half where a benchmark supports it (grocery)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS.md")
    args = parser.parse_args(argv)

    available = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    if args.every < 1:
        print(f"--every must be at least 1, not {args.every}")
        return 2
    ctx = BenchContext(quick=args.quick, every=args.every)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            tables: list[Table] = importlib.import_module(f"bench.bench_{name}").run(ctx)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        took = time.perf_counter() - start
        body = "\n".join(t.to_markdown() for t in tables)
        print(body, flush=True)
        sections.append(f"## {name}\n\n_{took:.0f} s_\n\n{body}")
    if sections and not args.no_write:
        header = (
            "# Benchmark results\n\n"
            f"Measured {datetime.date.today().isoformat()} by `make bench`"
            f"{' --quick' if args.quick else ''}{f' --every {args.every}' if args.every > 1 else ''}.\n\n"
            f"Machine: {machine_description()}.\n\nVersions: {package_versions()}.\n\n"
        )
        out = BENCH_DIR / "RESULTS.md"
        if args.names and out.exists():
            # Keep the sections of benchmarks not re-run this time.
            kept = [s for s in out.read_text().split("\n## ")[1:] if s.split("\n", 1)[0] not in names]
            sections += ["## " + s for s in kept]
        out.write_text(header + "\n".join(sections))
        print(f"wrote {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
