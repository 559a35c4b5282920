"""The ``report`` sub-command: run records -> leaderboard, LaTeX tables, figures."""

from __future__ import annotations

from pathlib import Path

from bench.cli.app import command


def _report_options(p) -> None:
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="folder searched recursively for run records; the report is written there "
        "(default: results)",
    )
    p.add_argument(
        "--ddof",
        type=int,
        choices=(0, 1),
        default=0,
        help="delta degrees of freedom of the standard deviation over seeds (default 0, "
        "the population std LM-BFF reports); every caption states it",
    )


@command(
    "report",
    "aggregate run records into leaderboard.md/.csv/.html, tables/*.tex and figures/",
)(_report_options)
def cmd_report(args) -> int:
    from bench.report.make import make_report

    paths = make_report(args.results, ddof=args.ddof)
    for path in paths:
        print(path)
    print(
        f"\n{len(paths)} files under {args.results}; start with {args.results / 'leaderboard.md'}"
    )
    return 0


def _compare_options(p) -> None:
    p.add_argument("reference", type=Path, help="folder of reference records (e.g. results/cpu)")
    p.add_argument("rerun", type=Path, help="folder of re-run records to check against it")


@command(
    "compare",
    "compare two folders of run records cell by cell (identical / within seed std / "
    "different) with the environment difference; runs nothing",
)(_compare_options)
def cmd_compare(args) -> int:
    """Exit 0 when every cell in both came back identical or within its seed std, 1 when one
    differs (or nothing could be compared)."""
    from bench.core.errors import TunebenchError
    from bench.report.compare import DIFFERENT, compare, lines

    for what, folder in (("reference", args.reference), ("rerun", args.rerun)):
        if not folder.is_dir():
            raise TunebenchError(
                f"{what} folder {folder} not found; give two folders of run records, e.g. "
                "`tunebench compare results/cpu results/reproduce/cpu-<time>/cpu`"
            )
    comp = compare(args.reference, args.rerun)
    print("\n".join(lines(comp)))
    return 1 if comp.count(DIFFERENT) or not comp.cells else 0
