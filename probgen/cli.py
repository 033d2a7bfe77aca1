"""The ``probgen`` command: ``tour``, ``datasets``, ``models``, ``bench NAME``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings


def _tour(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from probgen import gallery, models

    families = models.available()
    if args.only:
        unknown = sorted(set(args.only) - set(families))
        if unknown:
            print(f"probgen tour: unknown family {', '.join(unknown)}; valid: {', '.join(families)}", file=sys.stderr)
            return 2
        families = [f for f in families if f in args.only]
    mode = " (quick)" if args.quick else ""
    print(f"probgen tour{mode}: {len(families)} families, page and pictures in {args.out}/", flush=True)
    start = time.perf_counter()
    sections = gallery.run_tour(args.out, families, quick=args.quick, echo=lambda line: print(line, flush=True))
    page = gallery.write_page(sections, args.out, quick=args.quick)
    print(f"wrote {page} in {time.perf_counter() - start:.0f} s: open it in a browser", flush=True)
    return 1 if any(s.verdict == "failed" for s in sections) else 0


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
    p.add_argument("--quick", action="store_true", help="cut every budget (about a minute in all; pictures limited)")
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
