"""Command line: translates arguments into core calls and says what happened.

Results (tables, JSON, paths) go to stdout; log lines, progress and errors to stderr, one line
each (-v adds tracebacks). Exit statuses:
  0    done
  1    it ran, but inputs failed: ingest (any file), process (its obsid), run/demo (every obsid)
  2    a mistake in the command: a bad argument, a store or manifest that does not exist, an
       output that cannot be written, an install extra the command needs and does not have
       ("needs matplotlib: pip install 'batglitch[plot]'")
  3    stopped by an error it could not get past (a service or storage failing)
  130  interrupted (Ctrl-C): workers stopped, finished obsids kept for the next run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from batglitch import __version__, console
from batglitch.errors import BatGlitchError, Interrupted
from batglitch.extras import missing_extra

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
logger = logging.getLogger("batglitch.cli")


class UsageError(BatGlitchError):
    """A mistake in the command that only its user can fix (exit status 2)."""


# what a user fixes by changing the command; anything else is an error it could not get past
MISTAKES = (UsageError, FileNotFoundError, NotADirectoryError, PermissionError)


# -- argument types: a bad value ends the command before any work, with one line ---------------
def utc_time(text: str) -> str:
    """An ISO date or date-time (a `Z` or an offset is converted to UTC) as a naive UTC string."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (e.g. 2024-03-01 or 2024-03-01T06:00:00Z)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.date().isoformat() if moment.time() == dt.time() else moment.isoformat()


def count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def existing(what: str) -> Callable[[str], str]:
    """A store or manifest a command reads: a typo must not become an empty archive."""

    def parse(text: str) -> str:
        try:
            from batglitch.sources.fetch import exists

            found = exists(text)
        except ImportError as exc:  # s3:// without s3fs: argparse lets only its own errors by
            hint = missing_extra(exc)
            if hint is None:
                raise
            raise argparse.ArgumentTypeError(hint) from None
        if not found:
            raise argparse.ArgumentTypeError(f"no {what} at {text}")
        return text

    return parse


def writable_file(text: str) -> str:
    """An output file that can be written, checked before any work is done; missing folders
    are made (as `make run` expects of out/)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {path.parent} is not writable")
    return text


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (its usage block is what --help is for)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- commands ----------------------------------------------------------------------------------
def _files(inputs: Sequence[str]) -> list[str]:
    """Expand directories to the event files below them (the old workflow's download tree)."""
    found: list[str] = []
    for item in inputs:
        if "://" not in item and Path(item).is_dir():
            found += sorted(str(p) for p in Path(item).rglob("*.evt*") if p.is_file())
        else:
            found.append(item)
    return found


def cmd_ingest(args: argparse.Namespace) -> int:
    from batglitch.pipeline.worker import FAILED, ingest_file
    from batglitch.store.archive import Archive

    archive = Archive(args.store)
    files = _files(args.inputs)
    if not files:
        raise UsageError(f"no event files (*.evt*) in {' '.join(args.inputs)}")
    results = []
    with console.Progress("event files", len(files), "file", enabled=args.progress) as bar:
        for f in files:
            results.append(ingest_file(f, archive, allow_uncalibrated=args.allow_uncalibrated))
            bar.update()
    for f, r in zip(files, results, strict=True):
        print(f"{r.status:12s} {r.obsid:12s} {r.n_windows:5d} windows  {r.error or f}")
    summary = archive.publish()
    print(f"{args.store}: {summary.n_windows} windows from {summary.n_obsids} obsids")
    return EXIT_FAILED if any(r.status == FAILED for r in results) else EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from batglitch.standins.synth import SynthSpec, write_event_file

    spec = SynthSpec(
        obsid=args.obsid,
        tstart=args.tstart,
        duration=args.duration,
        rate_hz=args.rate,
        n_glitches=args.glitches,
        n_grbs=args.grbs,
        gainapp=not args.uncalibrated,
        seed=args.seed,
    )
    truth = write_event_file(args.out, spec)
    print(f"{args.out}: glitches at {', '.join(f'{t:.3f}' for t in truth.glitch_times)}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """Start a run by hand (e.g. for array jobs): manifest and run record in the store."""
    from batglitch.pipeline.job import plan_run
    from batglitch.pipeline.plan import PlanOptions

    run = plan_run(
        args.begin, args.end, args.store, force=args.force, limit=args.limit,
        options=PlanOptions(slewing=args.slewing, grbs=args.grbs),
    )  # fmt: skip
    print(f"run {run.run_id}: {run.n_obsids} obsids ({run.skipped_complete} already complete)")
    print(f"manifest: {run.manifest}")
    print(
        f"next: batglitch process --manifest {run.manifest} --store {run.store} "
        f"--run-id {run.run_id} --index N   (N < {run.n_obsids}), then "
        f"batglitch finalize --store {run.store} --run-id {run.run_id}"
    )
    return EXIT_OK


def cmd_process(args: argparse.Namespace) -> int:
    """One manifest item, e.g. as an array job: the index defaults to AWS_BATCH_JOB_ARRAY_INDEX."""
    from batglitch.pipeline.job import process_item
    from batglitch.pipeline.plan import read_manifest
    from batglitch.pipeline.worker import FAILED
    from batglitch.store.archive import Archive

    index = (
        args.index
        if args.index is not None
        else int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX", 0))
    )
    entries = read_manifest(args.manifest)
    if not 0 <= index < len(entries):
        raise UsageError(f"index {index} outside the manifest's {len(entries)} entries")
    result = process_item(entries[index], Archive(args.store), args.run_id)
    print(json.dumps(result.to_dict()))
    return EXIT_FAILED if result.status == FAILED else EXIT_OK


def cmd_finalize(args: argparse.Namespace) -> int:
    from batglitch.store.archive import Archive

    if args.run_id:
        from batglitch.pipeline.job import finalize_run

        print(finalize_run(args.store, args.run_id).table())
        return EXIT_OK
    summary = Archive(args.store).publish()
    print(f"{args.store}: {summary.n_windows} windows from {summary.n_obsids} obsids")
    return EXIT_OK


def cmd_versions(args: argparse.Namespace) -> int:
    from batglitch.store.archive import Archive

    print(f"{'snapshot':<20}  {'run id':<31}  {'written (UTC)':<25}  {'rows':>7}  {'obsids':>6}")
    for v in Archive(args.store).versions():
        print(
            f"{v.snapshot_id:<20}  {v.run_id or '-':<31}  {v.written_at[:25]:<25}  "
            f"{v.n_windows:>7}  {v.n_obsids:>6}"
        )
    return EXIT_OK


def cmd_expire(args: argparse.Namespace) -> int:
    import datetime as dt

    from batglitch.store.archive import Archive

    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days)
    expired, gc = Archive(args.store).expire(cutoff)
    freed = gc.bytes_deleted if gc else 0
    print(f"{args.store}: {expired} versions older than {cutoff:%Y-%m-%d %H:%M} expired, "
          f"{freed} bytes of unreferenced data deleted")  # fmt: skip
    return EXIT_OK


def _report_run(args: argparse.Namespace, report, notes: Sequence[str] = ()) -> int:
    print(report.table())
    for line in notes:
        print(line)
    print(f"archive: {args.store}   (batglitch.open_archive({args.store!r}))")
    if args.preview:
        from batglitch.preview import write_preview
        from batglitch.store.reader import open_archive

        write_preview(open_archive(args.store), args.preview)
        print(f"preview: {args.preview}")
    return EXIT_OK if report.failed < report.planned or report.planned == 0 else EXIT_FAILED


def _run_options(args: argparse.Namespace) -> dict:
    return {
        "workers": args.workers, "limit": args.limit, "max_windows": args.max_windows,
        "force": args.force, "progress": args.progress,
    }  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    from batglitch import pool
    from batglitch.pipeline.plan import PlanOptions

    report = pool.run(
        args.begin, args.end, args.store,
        options=PlanOptions(slewing=args.slewing, grbs=args.grbs), **_run_options(args),
    )  # fmt: skip
    return _report_run(args, report)


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole job offline: a fake Swift API, a fake BAT GRB catalogue and a fake HEASARC tree
    of synthetic event files (GUANO dumps and BAT trigger files)."""
    from batglitch import pool
    from batglitch.pipeline.plan import PlanOptions
    from batglitch.standins import FakeSwiftAPI, demo_observations, fill_demo_heasarc
    from batglitch.standins.demo import demo_bursts, planted_problems
    from batglitch.standins.grb_catalog import FakeGRBCatalog

    if "://" in args.store:
        raise UsageError("demo writes its fake HEASARC tree next to the store: use a local --store")
    observations = demo_observations(args.begin, args.end, args.obsids, args.seed)
    bursts = demo_bursts(args.begin, args.end, seed=args.seed)
    world = observations + [b.observation() for b in bursts]
    heasarc = str(Path(args.store).resolve().parent / "fake-heasarc")
    logger.info(
        "writing %d synthetic observations and %d BAT trigger files to %s",
        len(observations), len(bursts), heasarc,
    )  # fmt: skip
    fill_demo_heasarc(heasarc, world, args.seed)
    with FakeSwiftAPI(world) as api, FakeGRBCatalog(bursts) as catalogue:
        logger.info("fake Swift API at %s, fake BAT GRB catalogue at %s", api.url, catalogue.url)
        report = pool.run(
            args.begin, args.end, args.store,
            options=PlanOptions(
                api_url=api.url, roots=(heasarc,), quicklook=(api.quicklook_url,),
                slewing=args.slewing, grbs=True, grb_api_url=catalogue.url,
            ),
            **_run_options(args),
        )  # fmt: skip
    return _report_run(args, report, planted_problems(observations, report.results))


def cmd_preview(args: argparse.Namespace) -> int:
    from batglitch.preview import write_preview
    from batglitch.store.reader import open_archive

    shown = write_preview(open_archive(args.store), args.out, n=args.n)
    print(f"{args.out}: {shown} windows")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from batglitch.store.reader import open_archive, training_set

    data = training_set(open_archive(args.store, args.version), args.resolution)
    np.savez_compressed(
        args.out, X=data.X, y=data.y, obsid=data.obsid, window_start=data.window_start,
        trigger_type=data.trigger_type, version=data.version,
    )  # fmt: skip
    labels, counts = np.unique(data.y, return_counts=True)
    classes = ", ".join(f"{n} {c}" for c, n in zip(labels, counts, strict=True)) or "no windows"
    print(f"{args.out}: X {data.X.shape} ({args.resolution}; {classes}), version {data.version}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    """The baseline classifier cross-validated on the archive alone (and on labelled DPIs)."""
    from batglitch.learn.report import evaluate_labelled_npz, report_archive
    from batglitch.store.reader import open_archive

    try:
        results = report_archive(open_archive(args.store, args.version), args.out)
    except ValueError as exc:  # one class only, or a class from a single observation
        print(f"batglitch evaluate: {args.store}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for result in results:
        print(result.line())
    if args.real:
        for result in evaluate_labelled_npz(args.real):
            print(f"{result.line()}  [{Path(args.real).name}]")
    print(f"picture: {args.out}")
    return EXIT_OK


# -- the parser ----------------------------------------------------------------------------------
def _output_options() -> argparse.ArgumentParser:
    """-v/-q/--no-progress, accepted before or after the subcommand (SUPPRESS: a subcommand's
    default never overwrites what was given before it)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug log lines and tracebacks")  # fmt: skip
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings, errors and results")  # fmt: skip
    group.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or progress log lines")  # fmt: skip
    return common


GRBS_HELP = "also the GRB windows of the BAT GRB catalogue's bursts (env BATGLITCH_GRB_API_URL)"


def parser() -> argparse.ArgumentParser:
    common = _output_options()
    p = Parser(
        prog="batglitch", description=__doc__, parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Parser:
        s = sub.add_parser(name, help=help, description=help, parents=[common])
        s.set_defaults(func=func, subparser=s)
        return s

    store_help = "archive: directory or s3://bucket/prefix"
    s = add("ingest", cmd_ingest, "archive event files you already have (paths, dirs or URLs)")
    s.add_argument("inputs", nargs="+")
    s.add_argument("--store", required=True, help=store_help)
    s.add_argument("--allow-uncalibrated", action="store_true", help="accept GAINAPP = F files")

    s = add("synth", cmd_synth, "write a synthetic BAT event file (.evt.gz)")
    s.add_argument("out", type=writable_file)
    s.add_argument("--obsid", default="00012345000")
    s.add_argument("--tstart", type=float, default=7.0e8)
    s.add_argument("--duration", type=positive, default=200.0)
    s.add_argument("--rate", type=positive, default=10_000.0, help="background rate, Hz")
    s.add_argument("--glitches", type=count(0), default=10)
    s.add_argument("--grbs", type=count(0), default=0)
    s.add_argument("--uncalibrated", action="store_true", help="write GAINAPP = F")
    s.add_argument("--seed", type=int, default=0)

    def date_range(s: Parser) -> None:
        s.add_argument("--begin", required=True, type=utc_time,
                       help="UTC, ISO: 2024-03-01, 2024-03-01T06:00, ...Z")  # fmt: skip
        s.add_argument("--end", required=True, type=utc_time, help="UTC, exclusive")
        s.add_argument("--limit", type=count(1), default=None, help="process at most N obsids")
        s.add_argument("--force", action="store_true", help="redo obsids already complete")
        s.add_argument("--slewing", action="store_true", help="also the slewing event files")
        if s.prog.split()[-1] != "demo":  # the demo's world always holds bursts
            s.add_argument("--grbs", action="store_true", help=GRBS_HELP)

    for name, func, help in (
        ("run", cmd_run, "plan, process and finalize a date range against the Swift services"),
        ("demo", cmd_demo, "the same job offline, on a fake Swift API and synthetic data"),
    ):
        s = add(name, func, help)
        date_range(s)
        s.add_argument("--store", default="out/archive", help=store_help)
        s.add_argument("--workers", type=count(1), default=2)
        s.add_argument("--max-windows", type=count(1), default=None, metavar="N",
                       help="stop starting obsids (in trigger order) once N windows are archived")  # fmt: skip
        s.add_argument("--preview", type=writable_file, default=None, help="also write this PNG")
        if name == "demo":
            s.add_argument("--obsids", type=count(1), default=36, help="synthetic observations")
            s.add_argument("--seed", type=int, default=1)

    s = add("plan", cmd_plan, "plan a run: the range's obsids not yet complete, into a manifest")
    date_range(s)
    s.add_argument("--store", required=True, help=store_help)

    s = add("process", cmd_process, "process one manifest entry (container / array-job mode)")
    s.add_argument("--manifest", required=True, type=existing("manifest"))
    s.add_argument("--index", type=count(0), default=None)
    s.add_argument(
        "--store", required=True, type=existing("archive"), help="an archive `plan` made"
    )
    s.add_argument("--run-id", default=None, help="record the result for `finalize --run-id`")

    s = add("finalize", cmd_finalize, "publish completed fragments as one new archive version")
    s.add_argument("--store", required=True, type=existing("archive"), help="an existing archive")
    s.add_argument("--run-id", default=None, help="tag the version with this run and report it")

    s = add("versions", cmd_versions, "list the archive's versions, newest first")
    s.add_argument("store", type=existing("archive"))

    s = add("expire", cmd_expire, "drop versions older than N days and delete unreferenced data")
    s.add_argument("store", type=existing("archive"))
    s.add_argument("--days", type=float, required=True)

    s = add("preview", cmd_preview, "PNG of a few windows: DPIs and light curves")
    s.add_argument("store", type=existing("archive"))
    s.add_argument("--out", type=writable_file, default="preview.png")
    s.add_argument("-n", type=count(1), default=6, help="windows to show")

    s = add("export", cmd_export, "scikit-learn ready arrays (.npz): X, y, obsid, window_start")
    s.add_argument("store", type=existing("archive"))
    s.add_argument("--out", required=True, type=writable_file)
    s.add_argument("--resolution", choices=("lowres", "original"), default="lowres")
    s.add_argument(
        "--version", default=None, help="run id, snapshot id or branch (default: newest)"
    )

    s = add("evaluate", cmd_evaluate,
            "cross-validate a baseline glitch-vs-GRB classifier on the archive, grouped by obsid")  # fmt: skip
    s.add_argument("store", type=existing("archive"))
    s.add_argument("--out", type=writable_file, default="evaluation.png",
                   help="picture: ROC, confusion, the most glitch- and GRB-like windows")  # fmt: skip
    s.add_argument("--real", type=existing("labelled DPIs"), default=None, metavar="NPZ",
                   help="also the baseline on labelled DPIs (original/lowres + _label arrays)")  # fmt: skip
    s.add_argument(
        "--version", default=None, help="run id, snapshot id or branch (default: newest)"
    )
    return p


def _check(args: argparse.Namespace) -> None:
    """What one argument's type cannot see."""
    begin, end = getattr(args, "begin", None), getattr(args, "end", None)
    if begin is not None and not dt.datetime.fromisoformat(begin) < dt.datetime.fromisoformat(end):
        args.subparser.error(f"--begin {begin} must be before --end {end} (the end is exclusive)")


def _interrupted(exc: BaseException) -> str:
    if not isinstance(exc, Interrupted):
        return "interrupted; obsids that finished are kept and the next run skips them"
    from batglitch.pipeline.report import interrupted

    return interrupted(exc)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    _check(args)
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    console.configure(level, verbose=verbose)
    args.progress = not (quiet or getattr(args, "no_progress", False))
    name = f"batglitch {args.command}"
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:  # errors.Interrupted is one as well
        print(f"{name}: {_interrupted(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        hint = missing_extra(exc)  # an install the user completes, like a mistake
        mistake = hint is not None or isinstance(exc, MISTAKES)
        what = hint or (exc if mistake else f"{type(exc).__name__}: {exc}")
        message = f"{name}: error: {what}"
        if verbose:
            traceback.print_exception(exc)
        elif not mistake:
            message += " (-v shows the traceback)"
        print(message, file=sys.stderr)
        return EXIT_USAGE if mistake else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
