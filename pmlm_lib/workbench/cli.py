"""The `pmlm` command."""

from __future__ import annotations

import argparse
import sys

from pmlm_lib.common.weights import CacheFolderError


def _add_data_options(parser) -> None:
    group = parser.add_argument_group("how the data files are read (data/README.md)")
    group.add_argument(
        "--encoding", help="auto (UTF-8, else Chinese GB18030), or the files' encoding: latin-1, cp1252, gbk ..."
    )
    group.add_argument("--delimiter", help="auto, ',', ';', tab or '|'")
    group.add_argument("--decimal", help="auto, '.' or ','")
    group.add_argument(
        "--date-format", dest="date_format", help="e.g. '%%d/%%m/%%Y %%H:%%M' (default: read as the column proves)"
    )
    order = group.add_mutually_exclusive_group()
    order.add_argument(
        "--dayfirst", dest="dayfirst", action="store_true", default=None, help="dates are day/month/year"
    )
    order.add_argument("--monthfirst", dest="dayfirst", action="store_false", help="dates are month/day/year")
    group.add_argument(
        "--resolution", choices=["day", "keep"], help="day: one examination per day (default); keep: timestamps"
    )
    group.add_argument(
        "--on-quality",
        dest="on_quality",
        choices=["clean", "raise"],
        help="clean: repair or remove and count data-quality findings (default); raise: stop at the first",
    )
    group.add_argument(
        "--allow-future-dates", action="store_true", help="dates shifted into the future by de-identification"
    )
    group.add_argument("--thousands", choices=[",", ".", " "], help="the numbers' thousands separator: 1,234.5")
    group.add_argument(
        "--on-conflict",
        dest="on_conflict",
        choices=["last", "first", "raise"],
        help="two values of one patient, time and indicator: the later row wins (last, default), first, or stop",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pmlm", description="PMLM workbench: regenerate the report with papermill.")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("report", help="run the notebooks in order and write reports/<run>/index.html")
    rep.add_argument(
        "--profile", help="smoke (tests, minutes), default (this CPU), paper (GPU sizes), or a profile file (.yaml)"
    )
    rep.add_argument("--run", help="run folder name under reports/ (default: a timestamp and the profile)")
    rep.add_argument("--data", help="data source for the first notebook: default, pbcseq, mimic_demo or a folder path")
    rep.add_argument(
        "--from",
        dest="start_from",
        metavar="NOTEBOOK",
        help="resume an existing --run at this notebook (e.g. 02), keeping the earlier outputs, profile, data and "
        "--set values",
    )
    rep.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (prefixes such as 01)")
    rep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="[NOTEBOOK.]NAME=VALUE",
        help="override a parameter, e.g. --set 01_data_filtering.min_patients=20 or --set seed=1",
    )

    plan = sub.add_parser(
        "plan", help="before a run: the LLM answers each notebook will request, tokens, minutes here, API cost"
    )
    plan.add_argument("--profile", default="default", help="a profile name or file")
    plan.add_argument("--data", help="data source, as for report")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NOTEBOOK.]NAME=VALUE")

    check = sub.add_parser(
        "check-data", help="load and check a data folder in seconds: what would be kept, cleaned, removed"
    )
    check.add_argument("path", help="a folder with exams and patients tables (CSV or Parquet), or pbcseq / mimic_demo")
    check.add_argument("--min-coverage", type=float, default=0.3, help="as notebook 01 (default 0.3)")
    check.add_argument("--min-patients", type=int, default=30, help="as notebook 01 (default 30)")
    _add_data_options(check)

    bench = sub.add_parser(
        "bench", help="measure speed and memory side by side; writes reports/bench/bench.json and .md"
    )
    bench.add_argument(
        "--parts",
        default="responders,retrieval,bertscore,report",
        help="comma-separated: responders, retrieval, bertscore, report (the report from empty caches, then again "
        "from the caches it filled: about 25 minutes here), devices (a GPU beside the CPU)",
    )
    bench.add_argument("--profile", default="default", help="profile of the report part")

    trainings = sub.add_parser(
        "trainings",
        help="train the refinement again on a finished run (k trainings in all) and compare PMLM's effect across "
        "them on the run's test patients; the run's report page gets the comparison",
    )
    trainings.add_argument("--run", default="latest", help="the finished run (a folder name under reports/)")
    trainings.add_argument(
        "--k", type=int, default=3, help="trainings in all, the run's own included (default 3: two more trainings)"
    )

    tune = sub.add_parser(
        "tune",
        help="train notebook 04 k times per configuration on a run's inputs (01-03 done) and compare the "
        "configurations on validation patients: mean, sd between trainings, worst training",
    )
    tune.add_argument("--run", required=True, help="a run whose notebooks 01-03 finished (a folder under reports/)")
    tune.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="NAME[=FILE.yaml]",
        help="a configuration: NAME alone is the run's own notebook 04; NAME=FILE sets the notebook 04 parameters "
        "that the YAML file maps (repeat for each configuration)",
    )
    tune.add_argument("--k", type=int, default=6, help="trainings per configuration (default 6)")
    tune.add_argument("--validation-patients", type=int, default=40, help="validation patients (default 40)")

    room = sub.add_parser(
        "headroom",
        help="what a per-patient choice of prompt could add over one edit for everyone: candidate edits of s_0 "
        "answered on validation patients (best single, per-patient oracle, cross-fitted selector)",
    )
    room.add_argument(
        "--run", default="latest", help="a run whose notebooks 01-03 finished (04: the policy's candidates)"
    )
    room.add_argument("--patients", type=int, help="validation patients (default 100)")
    room.add_argument("--plan", action="store_true", help="only say how many answers the study asks for")
    sub.add_parser("profiles", help="list the profiles")
    args = parser.parse_args(argv)

    from pmlm_lib.workbench.pipeline import PipelineError, run_report
    from pmlm_lib.workbench.profiles import (
        available_profiles,
        default_reports_dir,
        load_profile,
        parse_overrides,
        resolve_data,
    )

    try:
        if args.command == "bench":
            from pmlm_lib.workbench.bench import run_bench

            print(run_bench([p.strip() for p in args.parts.split(",") if p.strip()], profile=args.profile) / "bench.md")
            return 0
        if args.command == "trainings":
            from pmlm_lib.workbench.trainings import TrainingsError, run_trainings

            try:
                print(run_trainings((default_reports_dir() / args.run).resolve(), args.k) / "index.html")
            except TrainingsError as exc:
                print(f"pmlm trainings: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "tune":
            from pmlm_lib.workbench.trainings import TrainingsError
            from pmlm_lib.workbench.tuning import compare, configurations_from

            try:
                _, table = compare(
                    (default_reports_dir() / args.run).resolve(),
                    configurations_from(args.config),
                    args.k,
                    args.validation_patients,
                )
            except TrainingsError as exc:
                print(f"pmlm tune: {exc}", file=sys.stderr)
                return 1
            print(table.round(2).to_string())
            return 0
        if args.command == "headroom":
            return _headroom(args, default_reports_dir())
        if args.command == "profiles":
            for name in available_profiles():
                print(f"{name}: {load_profile(name).get('description', '')}")
            return 0
        if args.command == "check-data":
            from pmlm_lib.data.checkdata import check_data, options_from_args

            source = args.path if args.path in ("default", "pbcseq", "mimic_demo") else resolve_data(args.path)
            ok, text = check_data(source, options_from_args(args), args.min_coverage, args.min_patients)
            print(text)
            return 0 if ok else 1
        if args.command == "plan":
            from pmlm_lib.workbench.plan import format_plan, make_plan

            print(format_plan(make_plan(args.profile, resolve_data(args.data), parse_overrides(args.overrides))))
            return 0
        run_dir = run_report(
            profile=args.profile,
            run=args.run,
            data=args.data,
            start_from=args.start_from,
            overrides=parse_overrides(args.overrides),
            only=args.only,
        )
    except (PipelineError, ValueError, CacheFolderError) as exc:
        print(f"pmlm {args.command}: {exc}", file=sys.stderr)
        return 1
    print(run_dir / "index.html")
    return 0


def _headroom(args, reports_dir) -> int:
    from pmlm_lib.workbench.headroom import PATIENTS, HeadroomError, plan_of, planned_answers, run_study

    base = (reports_dir / args.run).resolve()
    try:
        if args.plan:
            k, with_policy = plan_of(base)
            print(f"pmlm headroom on {base.name}: {planned_answers(k, args.patients or PATIENTS, with_policy)} answers")
            return 0
        out = run_study(base, args.patients or PATIENTS)
    except HeadroomError as exc:
        print(f"pmlm headroom: {exc}", file=sys.stderr)
        return 1
    print(out / "headroom.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
