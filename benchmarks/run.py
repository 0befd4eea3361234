"""Run the benchmarks and write one JSON file per benchmark (``make bench``).

Each ``benchmarks/bench_*.py`` module defines ``run(quick: bool) -> dict``; the dict is written
to ``OUTPUT/<name>.json`` together with the machine facts (CPU count, torch threads, versions).
Speed targets are judged from these files, never in unit tests: absolute times on shared
machines are noisy, so every benchmark reports ratios against the plain library measured in
the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the benchmarks share benchmarks/_timing.py


def machine_facts() -> dict:
    import numpy
    import torch
    import uproot

    import hepgen

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "versions": {
            "hepgen": hepgen.__version__,
            "numpy": numpy.__version__,
            "torch": torch.__version__,
            "uproot": uproot.__version__,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    # the process setup of the `hepgen` command (idle OpenMP threads sleep), before torch and
    # xgboost load: the benchmarks measure what the commands do
    from hepgen.cli import configure_process

    configure_process()
    args.output.mkdir(parents=True, exist_ok=True)
    modules = sorted(HERE.glob("bench_*.py"))
    if args.names:
        modules = [m for m in modules if m.stem.removeprefix("bench_") in args.names]
    for path in modules:
        name = path.stem.removeprefix("bench_")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = module.run(quick=args.quick)
        record = {
            "benchmark": name,
            "quick": args.quick,
            "wall_s": round(time.perf_counter() - start, 3),
            "machine": machine_facts(),
            "results": result,
        }
        out = args.output / f"{name}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out)
        print(f"[bench] {name}: {out} ({record['wall_s']} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
