"""Command line: translates arguments into core calls and prints what happened."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from batglitch import __version__


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
    results = [ingest_file(f, archive, allow_uncalibrated=args.allow_uncalibrated) for f in files]
    for f, r in zip(files, results, strict=True):
        print(f"{r.status:12s} {r.obsid:12s} {r.n_windows:5d} windows  {r.error or f}")
    summary = archive.finalize()
    print(f"{args.store}: {summary.n_windows} windows from {summary.n_obsids} obsids")
    return 1 if any(r.status == FAILED for r in results) else 0  # scripts must notice


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
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Start a run by hand (e.g. for array jobs): manifest and run record in the store."""
    from batglitch.pipeline.job import plan_run

    run = plan_run(
        args.begin, args.end, args.store, force=args.force, limit=args.limit,
        plan_options={"slewing": args.slewing},
    )  # fmt: skip
    print(f"run {run.run_id}: {run.n_obsids} obsids ({run.skipped_complete} already complete)")
    print(f"manifest: {run.manifest}")
    print(
        f"next: batglitch process --manifest {run.manifest} --store {run.store} "
        f"--run-id {run.run_id} --index N   (N < {run.n_obsids}), then "
        f"batglitch finalize --store {run.store} --run-id {run.run_id}"
    )
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """One manifest item, e.g. as an array job: the index defaults to AWS_BATCH_JOB_ARRAY_INDEX."""
    from batglitch.pipeline.job import process_item
    from batglitch.pipeline.worker import FAILED
    from batglitch.sources.catalog import read_manifest
    from batglitch.store.archive import Archive

    index = (
        args.index
        if args.index is not None
        else int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX", 0))
    )
    entries = read_manifest(args.manifest)
    if not 0 <= index < len(entries):
        print(f"index {index} outside the manifest's {len(entries)} entries", file=sys.stderr)
        return 2
    result = process_item(entries[index], Archive(args.store), args.run_id)
    print(json.dumps(result.to_dict()))
    return 1 if result.status == FAILED else 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from batglitch.store.archive import Archive

    if args.run_id:
        from batglitch.pipeline.job import finalize_run

        print(finalize_run(args.store, args.run_id).table())
        return 0
    summary = Archive(args.store).finalize()
    print(f"{args.store}: {summary.n_windows} windows from {summary.n_obsids} obsids")
    return 0


def _report_run(report, store: str, preview: str | None) -> int:
    print(report.table())
    print(f"archive: {store}   (xarray.open_zarr({store!r}))")
    if preview:
        from batglitch.preview import write_preview
        from batglitch.store.reader import open_archive

        write_preview(open_archive(store), preview)
        print(f"preview: {preview}")
    return 0 if report.failed < report.planned or report.planned == 0 else 1


def cmd_run(args: argparse.Namespace) -> int:
    from batglitch import pool

    report = pool.run(
        args.begin, args.end, args.store, workers=args.workers, limit=args.limit,
        force=args.force, plan_options={"slewing": args.slewing},
    )  # fmt: skip
    return _report_run(report, args.store, args.preview)


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole job offline: a fake Swift API and a fake HEASARC tree of synthetic event files."""
    from batglitch import pool
    from batglitch.standins import FakeSwiftAPI, demo_observations, fill_demo_heasarc

    if "://" in args.store:
        print(
            "demo writes its fake HEASARC tree next to the store: use a local --store",
            file=sys.stderr,
        )
        return 2
    observations = demo_observations(args.begin, args.end, args.obsids, args.seed)
    heasarc = str(Path(args.store).resolve().parent / "fake-heasarc")
    print(f"writing {len(observations)} synthetic observations to {heasarc} ...")
    fill_demo_heasarc(heasarc, observations, args.seed)
    with FakeSwiftAPI(observations) as api:
        print(f"fake Swift API at {api.url}")
        report = pool.run(
            args.begin, args.end, args.store, workers=args.workers, limit=args.limit,
            force=args.force,
            plan_options={"api_url": api.url, "roots": [heasarc], "slewing": args.slewing},
        )  # fmt: skip
    return _report_run(report, args.store, args.preview)


def cmd_preview(args: argparse.Namespace) -> int:
    from batglitch.preview import write_preview
    from batglitch.store.reader import open_archive

    shown = write_preview(open_archive(args.store), args.out, n=args.n)
    print(f"{args.out}: {shown} windows")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from batglitch.store.reader import open_archive, training_set

    data = training_set(open_archive(args.store), args.resolution)
    np.savez_compressed(
        args.out, X=data.X, obsid=data.obsid.astype(str), window_start=data.window_start,
        trigger_type=data.trigger_type.astype(str),
    )  # fmt: skip
    print(f"{args.out}: X {data.X.shape} ({args.resolution})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batglitch", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        s.set_defaults(func=func)
        return s

    s = add("ingest", cmd_ingest, "archive event files you already have (paths, dirs or URLs)")
    s.add_argument("inputs", nargs="+")
    s.add_argument("--store", required=True, help="archive: directory or s3://bucket/prefix")
    s.add_argument("--allow-uncalibrated", action="store_true", help="accept GAINAPP = F files")

    s = add("synth", cmd_synth, "write a synthetic BAT event file (.evt.gz)")
    s.add_argument("out")
    s.add_argument("--obsid", default="00012345000")
    s.add_argument("--tstart", type=float, default=7.0e8)
    s.add_argument("--duration", type=float, default=200.0)
    s.add_argument("--rate", type=float, default=10_000.0, help="background rate, Hz")
    s.add_argument("--glitches", type=int, default=10)
    s.add_argument("--grbs", type=int, default=0)
    s.add_argument("--uncalibrated", action="store_true", help="write GAINAPP = F")
    s.add_argument("--seed", type=int, default=0)

    for name, func, help in (
        ("run", cmd_run, "plan, process and finalize a date range against the Swift services"),
        ("demo", cmd_demo, "the same job offline, on a fake Swift API and synthetic data"),
    ):
        s = add(name, func, help)
        s.add_argument("--begin", required=True, help="UTC date, e.g. 2024-03-01")
        s.add_argument("--end", required=True)
        s.add_argument("--store", default="out/archive.zarr")
        s.add_argument("--workers", type=int, default=2)
        s.add_argument("--limit", type=int, default=None, help="process at most N obsids")
        s.add_argument("--force", action="store_true", help="redo obsids already complete")
        s.add_argument("--preview", default=None, help="also write this PNG")
        s.add_argument("--slewing", action="store_true", help="also the slewing event files")
        if name == "demo":
            s.add_argument("--obsids", type=int, default=36, help="synthetic observations")
            s.add_argument("--seed", type=int, default=1)

    s = add("plan", cmd_plan, "plan a run: the range's obsids not yet complete, into a manifest")
    s.add_argument("--begin", required=True)
    s.add_argument("--end", required=True)
    s.add_argument("--store", required=True)
    s.add_argument("--force", action="store_true", help="include obsids already complete")
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--slewing", action="store_true", help="also the slewing event files")

    s = add("process", cmd_process, "process one manifest entry (container / array-job mode)")
    s.add_argument("--manifest", required=True)
    s.add_argument("--index", type=int, default=None)
    s.add_argument("--store", required=True)
    s.add_argument("--run-id", default=None, help="record the result for `finalize --run-id`")

    s = add("finalize", cmd_finalize, "rebuild the archive's training view from complete fragments")
    s.add_argument("--store", required=True)
    s.add_argument("--run-id", default=None, help="also report on this run")

    s = add("preview", cmd_preview, "PNG of a few windows: DPIs and light curves")
    s.add_argument("store")
    s.add_argument("--out", default="preview.png")
    s.add_argument("-n", type=int, default=6)

    s = add("export", cmd_export, "scikit-learn ready arrays (.npz): X, obsid, window_start")
    s.add_argument("store")
    s.add_argument("--out", required=True)
    s.add_argument("--resolution", choices=("lowres", "original"), default="lowres")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
