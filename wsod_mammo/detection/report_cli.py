"""``wsod report RUN_DIR... [--output DIR] [--compare A B]``: the merged Table II of several test runs, and the paired
comparison of two methods (their TPR or another figure) or two heads (their AUC) on the same test images.

The tables need only the standard library: torch is imported for ``--compare`` alone, so ``--help`` and the tables
start at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser

from wsod_mammo.detection.mass_kinds import mass_kind
from wsod_mammo.detection.report import collect_table2, find_run_dir, say_test_run, write_table


def _parser() -> ArgumentParser:
    # allow_abbrev off, as fit: a misspelt option is refused, not taken as the one it begins
    parser = ArgumentParser(
        prog="wsod report", description="Merge the Table II rows of several test runs.", allow_abbrev=False
    )
    parser.add_argument("run_dirs", nargs="+", type=str, help="test run directories holding table2_row.csv")
    parser.add_argument("--output", type=str | None, default=None, help="directory for table2.md and table2.csv")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=str,
        default=None,
        help="two methods A B (RUN_DIR:method or method): paired bootstrap of their TPR (or --figure); or two heads "
        "(RUN_DIR:fusion, RUN_DIR:global, RUN_DIR:local): of their AUC (Table I), over all distinct test images (or "
        "--level breast), with DeLong's test clustered by study. Several runs a side (RUN_1,RUN_2,RUN_3:fusion, "
        "paired in order with the other side's: seeds of two configurations): Obuchowski-Rockette's test with each "
        "run a random reader, for heads' AUC, TPR and every --figure",
    )
    parser.add_argument(
        "--subset", default="mass", choices=["mass", "all"], metavar="{mass,all}",
        help="--compare's images: mass (the mass images, as Table II) or all (every test image)",
    )  # fmt: skip
    parser.add_argument(
        "--level", default="image", choices=["image", "breast"], metavar="{image,breast}",
        help="--compare of two heads: their AUC over the distinct test images (Table I) or over the breasts (Table "
             "I's breast level: a breast's probability the mean of its views')",
    )  # fmt: skip
    parser.add_argument(
        "--figure", default="tpr", choices=["tpr", "pointing", "energy", "wafroc", "afroc"],
        metavar="{tpr,pointing,energy,wafroc,afroc}",
        help="what --compare of two methods compares: tpr (Table II's TPR at the FPPI budget), pointing (the "
             "pointing game), energy (the share of the map's energy inside the masses), or wafroc / afroc (the "
             "JAFROC figures of merit over every test image, whatever --subset says)",
    )  # fmt: skip
    parser.add_argument(
        "--masses", type=str | None, default=None,
        help="--compare counting only the masses of one row of Table II per finding BI-RADS or per mass size: "
             "'BI-RADS 5', '< 10 mm', '10-20 mm', '>= 20 mm' (false positives all count); with --figure wafroc or "
             "afroc, every normal image and only those masses (as wafroc_by_kind.md); with --figure pointing or "
             "energy, the images with such a mass, against those masses alone (as pointing_by_kind.md)",
    )  # fmt: skip
    parser.add_argument(
        "--density", type=str | None, default=None,
        help="--compare over the test images of one breast density ('DENSITY C', as the per-density tables name "
             "it): Table II's TPR and heads' AUC as table2_by_density.md and table1_by_density.md rate it, --figure "
             "wafroc or afroc as wafroc_by_kind.md, pointing or energy as pointing_by_kind.md",
    )  # fmt: skip
    return parser


def _check_stratum(args: Any) -> None:
    """``--masses`` and ``--density`` select what ``--compare`` counts: one of them, with ``--compare``, and
    ``--density`` not at breast level (the per-density tables rate images)."""
    given = [f"--{name}" for name in ("masses", "density") if getattr(args, name) is not None]
    if given and args.compare is None:
        raise ValueError(f"{given[0]}: it selects what --compare counts; give --compare A B too")
    if len(given) == 2:
        raise ValueError("--masses and --density: one stratum at a time, as the per-stratum tables rate them")
    if args.density is not None and args.level != "image":
        raise ValueError("--density: Table I per breast density rates images; drop --level breast")


def _check_comparison(args: Any, heads: list[bool], head_names: str) -> None:
    """What ``--compare`` compares fits the options that shape it: both sides heads (AUC, ``--level``) or both
    saliency methods (TPR, ``--figure``, ``--masses``); said before any table is read. ``heads``: per side, whether
    it names a head (``head_names``: the heads, for the message)."""
    if any(heads) and not all(heads):
        raise ValueError(
            f"--compare {' '.join(args.compare)}: one side is a head ({head_names}: AUC), the other a "
            "saliency method (TPR); compare two heads or two methods"
        )
    if args.level != "image" and not (heads and all(heads)):
        raise ValueError(f"--level {args.level}: it rates the heads --compare compares; give --compare of two heads "
                         f"({head_names if args.compare else 'RUN_A:fusion RUN_B:fusion'})")  # fmt: skip
    if args.figure != "tpr":
        if args.compare is None:
            raise ValueError(f"--figure {args.figure}: it selects what --compare compares; give --compare A B too")
        if any(heads):
            raise ValueError(
                f"--figure {args.figure}: a figure of saliency methods; --compare of two heads compares AUC"
            )
    if args.masses is not None:
        if any(heads):
            raise ValueError("--masses: it selects the masses a TPR counts; --compare of two heads compares AUC")
        mass_kind(args.masses)


def _comparison(args: Any, heads: list[bool], over_runs: bool) -> str:
    """``--compare``'s text: two heads' AUC over Table I's images (every distinct test image, whatever
    ``--subset`` says), two methods' wAFROC or AFROC (every test image: normal images hold false positives), another
    ``--figure`` or their TPR; over several runs a side where a side names several (``over_runs``)."""
    from wsod_mammo.detection.compare import compare
    from wsod_mammo.detection.compare_afroc import compare_fom
    from wsod_mammo.detection.compare_auc import compare_auc
    from wsod_mammo.detection.compare_pointing import compare_figure
    from wsod_mammo.detection.compare_runs import (
        compare_auc_runs,
        compare_figure_runs,
        compare_fom_runs,
        compare_tpr_runs,
    )

    a, b = args.compare
    first = Path(args.run_dirs[0])  # as typed, so a side without RUN_DIR: is named as the user named its run
    if all(heads):
        return (compare_auc_runs if over_runs else compare_auc)(a, b, first, args.level, args.density)
    if args.figure in ("wafroc", "afroc"):
        fom = compare_fom_runs if over_runs else compare_fom
        return fom(a, b, first, args.figure, args.masses, args.density)
    if args.figure != "tpr":
        figure = compare_figure_runs if over_runs else compare_figure
        return figure(a, b, first, args.figure, args.subset, args.masses, args.density)
    return (compare_tpr_runs if over_runs else compare)(a, b, first, args.subset, args.masses, args.density)


def _write_table2(output: Path, markdown: str, table2_csv: str) -> None:
    """``table2.md`` and ``table2.csv`` in ``output``, both written before either replaces an older one."""
    output.mkdir(parents=True, exist_ok=True)  # a full disk: the error names the file, the older pair stays whole
    write_table(output / "table2.md", markdown, table2_csv)


def main(argv: list[str] | None = None) -> None:
    """Print the merged Table II; with ``--output`` write ``table2.md`` and ``table2.csv`` there; ``--compare`` adds
    a paired bootstrap of two methods' TPR (``RUN_DIR:method`` or ``method`` of the first run; see
    :mod:`wsod_mammo.detection.compare`) or of two heads' AUC (``RUN_DIR:fusion``;
    :mod:`wsod_mammo.detection.compare_auc`)."""
    args = _parser().parse_args(argv)
    say_test_run.cache_clear()  # each run's line once per report, and again in the next report of this process
    _check_stratum(args)
    heads, over_runs, head_names = [], False, ""
    if args.compare is not None:  # torch's import (seconds) for --compare only: the tables and --help stay light
        from wsod_mammo.detection.compare_auc import HEAD_NAMES, is_head
        from wsod_mammo.detection.compare_runs import run_specs

        if len(args.compare) != 2:
            raise ValueError(f"--compare: expected two methods A B, found {args.compare}")
        heads = [is_head(side) for side in args.compare]
        over_runs = any(len(run_specs(side)) > 1 for side in args.compare)
        head_names = ", ".join(HEAD_NAMES)
    _check_comparison(args, heads, head_names)
    # a ~ the shell left (`--output=~/x`, a quoted run folder) is the home folder, not a folder named ~ here
    output = None if args.output is None else Path(args.output).expanduser()
    if output is not None and output.exists() and not output.is_dir():
        raise ValueError(f"--output: {output} is a file; expected a directory for table2.md and table2.csv")
    markdown, table2_csv = collect_table2([find_run_dir(Path(run_dir).expanduser()) for run_dir in args.run_dirs])
    print(markdown, end="")
    if args.compare is not None:
        print(_comparison(args, heads, over_runs), end="")
    if output is not None:
        _write_table2(output, markdown, table2_csv)


if __name__ == "__main__":  # `python -m wsod_mammo.detection.report_cli`: `wsod report` (it ran nothing and exited 0)
    import sys as _sys

    from wsod_mammo.commands import main as _main

    _main(["report", *_sys.argv[1:]])
