"""The `pmlm` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pmlm", description="PMLM workbench: regenerate the report with papermill.")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("report", help="run the notebooks in order and write reports/<run>/index.html")
    rep.add_argument("--profile", default="default", help="smoke (tests, minutes), default (this CPU), paper (GPU sizes)")
    rep.add_argument("--run", help="run folder name under reports/ (default: a timestamp and the profile)")
    rep.add_argument("--data", help="data source for the first notebook: default, pbcseq, mimic_demo or a folder path")
    rep.add_argument("--from", dest="start_from", metavar="NOTEBOOK",
                     help="resume an existing --run at this notebook (e.g. 02), keeping the earlier outputs")
    rep.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (prefixes such as 01)")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NOTEBOOK.]NAME=VALUE",
                     help="override a parameter, e.g. --set 01_data_filtering.min_patients=20 or --set seed=1")

    bench = sub.add_parser("bench", help="measure speed and memory side by side; writes reports/bench/bench.json and .md")
    bench.add_argument("--parts", default="responders,retrieval,bertscore,report",
                       help="comma-separated: responders, retrieval, bertscore, report (the report runs twice: about 25 minutes)")
    bench.add_argument("--profile", default="default", help="profile of the report part")

    sub.add_parser("profiles", help="list the profiles")
    args = parser.parse_args(argv)

    from .pipeline import PipelineError, available_profiles, load_profile, parse_overrides, run_report

    if args.command == "bench":
        from .bench import run_bench

        try:
            print(run_bench([p.strip() for p in args.parts.split(",") if p.strip()], profile=args.profile) / "bench.md")
        except (PipelineError, ValueError) as exc:
            print(f"pmlm bench: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "profiles":
        for name in available_profiles():
            print(f"{name}: {load_profile(name).get('description', '')}")
        return 0
    try:
        run_dir = run_report(profile=args.profile, run=args.run, data=args.data, start_from=args.start_from,
                             overrides=parse_overrides(args.overrides), only=args.only)
    except PipelineError as exc:
        print(f"pmlm report: {exc}", file=sys.stderr)
        return 1
    print(run_dir / "index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
