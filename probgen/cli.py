"""The ``probgen`` command: ``tour``, ``datasets``, ``models``, ``bench NAME``."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def _tour(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import probgen

    os.makedirs(args.out, exist_ok=True)
    families = probgen.models.available()
    if args.only:
        families = [f for f in families if f in args.only]
    print(f"probgen tour: {len(families)} families, pictures in {args.out}/", flush=True)
    failures = 0
    for name in families:
        cls = probgen.models.get(name)
        start = time.perf_counter()
        try:
            line = cls.tour(args.out, progress=False)
        except Exception as exc:  # report and go on: the tour shows every family it can
            failures += 1
            line = f"FAILED: {type(exc).__name__}: {exc}"
        print(f"  {name:<22} {time.perf_counter() - start:5.1f}s  {line}", flush=True)
    return 1 if failures else 0


def _datasets(args) -> int:
    import pandas as pd

    from probgen import datasets

    with pd.option_context("display.max_colwidth", 80, "display.width", 160):
        print(datasets.describe().to_string(index=False))
    return 0


def _models(args) -> int:
    import probgen

    for name in probgen.models.available():
        cls = probgen.models.get(name)
        print(f"{name:<22} {cls.__name__:<26} default inference: {cls.default_inference:<12} "
              f"log_prob: {cls.log_prob_kind or 'none'}")
    return 0


def _bench(args) -> int:
    from probgen import bench

    if args.name == "list":
        print("\n".join(bench.available()))
        return 0
    bench.run(args.name, quick=args.quick, device=args.device, json_path=args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="arviz")
    parser = argparse.ArgumentParser(prog="probgen", description="Generative models with one interface.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tour", help="a short run through every model family on embedded data")
    p.add_argument("--out", default="probgen-out", help="folder for the pictures (default: probgen-out)")
    p.add_argument("--only", nargs="*", help="family names to include")
    p.set_defaults(func=_tour)
    p = sub.add_parser("datasets", help="list the embedded data sets")
    p.set_defaults(func=_datasets)
    p = sub.add_parser("models", help="list the model families")
    p.set_defaults(func=_models)
    p = sub.add_parser("bench", help="run a benchmark ('probgen bench list' lists them)")
    p.add_argument("name")
    p.add_argument("--quick", action="store_true", help="a smaller, faster version")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
