"""The ``biomero-rs`` command: migrate, rebuild, catch-up, status, verify and demo.

The database URL comes from ``--url`` or ``SQLALCHEMY_URL``.
Exit codes: 0 done, 1 failed (the message says why; for verify: the views differ),
2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import time
from typing import Any, List, Optional, Sequence

import biomero_rs
from biomero_rs.exceptions import BiomeroError

VIEW_NAMES = list(biomero_rs.ALL)


class ProgressBar:
    """events done/total, rate and ETA on stderr (redrawn in place on a terminal)."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last_print = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self.last_print < (0.1 if self.tty else 5.0):
            return
        self.last_print = now
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        frac = done / total if total else 1.0
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta_text = "--" if eta == float("inf") else f"{eta:,.0f}s"
        line = f"{self.label} [{bar}] {done:,}/{total:,} events  {rate:,.0f} ev/s  ETA {eta_text}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _views(text: Optional[str]) -> List[str]:
    if not text:
        return VIEW_NAMES
    return [v.strip() for v in text.split(",") if v.strip()]


def _url(args) -> str:
    url = args.url or os.environ.get("SQLALCHEMY_URL")
    if not url:
        raise SystemExit("biomero-rs: no database URL; pass --url or set SQLALCHEMY_URL")
    return url


def cmd_migrate(args) -> int:
    applied = biomero_rs.run_migrations(_url(args))
    print("applied: " + ", ".join(applied) if applied else "view tables are up to date")
    return 0


def _since(args: argparse.Namespace) -> Optional[str]:
    """The cutoff of --since DATE or --days N (N days before now, UTC)."""
    if getattr(args, "days", None) is not None:
        if args.days < 0:
            raise ValueError(f"--days: expected a number of days >= 0, got {args.days}")
        now = datetime.datetime.now(datetime.timezone.utc)
        return (now - datetime.timedelta(days=args.days)).isoformat()
    return getattr(args, "since", None)


def cmd_rebuild(args) -> int:
    bar = None if args.quiet else ProgressBar("rebuild")
    start = time.monotonic()
    since = _since(args)
    n = biomero_rs.rebuild_views(_url(args), _views(args.views), progress=bar, since=since)
    secs = time.monotonic() - start
    frm = f" (cutoff {since})" if since else ""
    print(f"rebuilt {', '.join(_views(args.views))} from {n:,} events{frm} in {secs:.2f}s")
    return 0


def cmd_catch_up(args) -> int:
    n = biomero_rs.catch_up(_url(args), _views(args.views))
    print(f"applied {n:,} events")
    return 0


def cmd_status(args) -> int:
    s = biomero_rs.status(_url(args))
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"backend:  {s['backend']}")
    print(f"database: {s['url']}")
    print(f"events:   {s['events']:,} (last notification id {s['max_notification_id']:,})")
    for topic, n in s["topics"].items():
        print(f"  {topic.split(':', 1)[-1]:<34} {n:>10,}")
    print("views (tracking position, events behind):")
    for name, v in s["views"].items():
        print(f"  {name:<20} {v['position']:>10,}  {v['lag']:>8,} behind")
    return 0


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def cmd_verify(args: argparse.Namespace) -> int:
    diffs = biomero_rs.verify(_url(args))
    if args.json:
        print(json.dumps([_jsonable(d) for d in diffs], indent=2))
    else:
        for d in diffs:
            if d["column"] is None:
                what = "missing row" if d["live"] is None else "extra row"
                side = d["expected"] if d["live"] is None else d["live"]
                print(f"{d['table']} {d['key']}: {what} {_jsonable(side)}")
            else:
                print(f"{d['table']} {d['key']} {d['column']}: live {d['live']!r}, "
                      f"expected {d['expected']!r}")
        print(f"{len(diffs)} differences" if diffs else "the views are right")
    return 1 if diffs else 0


def _table(title: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    print(f"\n{title} ({len(rows)} rows)")
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def simulate(tracker, workflows: int, seed: int) -> None:
    """Writes workflows as BIOMERO runs them: transfer, convert, run on Slurm, retrieve."""
    rng = random.Random(seed)
    for i in range(workflows):
        user, group = rng.choice([(3, 7), (4, 7), (5, 9)])
        name = rng.choice(["cellpose", "stardist", "cellexpansion"])
        wf = tracker.initiate_workflow(f"{name} run {i + 1}", f"v{rng.randint(1, 3)}.0", user, group)
        tracker.start_workflow(wf)
        steps = ["_SLURM_Image_Transfer.py", "convert_zarr_to_tiff", name, "SLURM_Get_Results.py"]
        failed = False
        for step in steps:
            task = tracker.add_task_to_workflow(wf, step, "1.0", {"image_ids": [rng.randint(1, 500)]}, {})
            tracker.start_task(task)
            if step == name:
                job = 1000 + i
                tracker.add_job_id(task, str(job))
                for pct in (10, 55, 100):
                    tracker.update_task_status(task, "RUNNING")
                    tracker.update_task_progress(task, f"{pct}%")
                if rng.random() < 0.2:
                    tracker.update_task_status(task, "FAILED")
                    tracker.fail_task(task, "Out of memory")
                    failed = True
                    break
                tracker.update_task_status(task, "COMPLETED")
            else:
                tracker.update_task_status(task, "RUNNING")
            tracker.complete_task(task, "ok")
        if failed:
            tracker.fail_workflow(wf, "Out of memory")
        else:
            tracker.complete_workflow(wf)


def cmd_demo(args) -> int:
    path = os.path.abspath(args.db)
    if os.path.exists(path) and not args.keep:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    url = f"sqlite:///{path}"
    tracker = biomero_rs.WorkflowTracker(url)
    start = time.monotonic()
    simulate(tracker, args.workflows, args.seed)
    secs = time.monotonic() - start
    s = biomero_rs.status(url)
    print(f"wrote {s['events']:,} events for {args.workflows} workflows into {path} in {secs:.2f}s")
    rows = [w.to_dict() for w in biomero_rs.WorkflowProgress(url).list_workflows()]  # newest first
    _table("biomero_workflow_progress_view", rows,
           ["name", "status", "progress", "user", "group", "task", "main_task_name", "start_time"])
    rows = [j.to_dict() for j in biomero_rs.JobAccounting(url).list_jobs()]
    _table("biomero_job_view", rows, ["slurm_job_id", "user", "group", "task_id"])
    rows = [j.to_dict() for j in biomero_rs.JobProgress(url).list_job_progress()]
    _table("biomero_job_progress_view", rows, ["slurm_job_id", "status", "progress"])
    rows = sorted((t.to_dict() for t in biomero_rs.WorkflowAnalytics(url).list_task_executions()),
                  key=lambda r: r["start_time"])
    _table("biomero_task_execution", rows,
           ["task_name", "task_version", "user_id", "group_id", "status", "start_time", "end_time", "error_type"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="biomero-rs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"biomero-rs {biomero_rs.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_url(sp):
        sp.add_argument("--url", help="database URL (default: $SQLALCHEMY_URL)")
        return sp

    sp = with_url(sub.add_parser("migrate", help="create or upgrade the biomero_* view tables"))
    sp.set_defaults(func=cmd_migrate)

    sp = with_url(sub.add_parser("rebuild", help="empty the views and replay every event"))
    sp.add_argument("--views", help=f"comma-separated views (default: all of {','.join(VIEW_NAMES)})")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    cutoff = sp.add_mutually_exclusive_group()
    cutoff.add_argument("--since", metavar="YYYY-MM-DD",
                        help="replay only from the first event at or after this date (UTC) or ISO time")
    cutoff.add_argument("--days", type=int, metavar="N",
                        help="replay only the events of the last N days")
    sp.set_defaults(func=cmd_rebuild)

    sp = with_url(sub.add_parser("catch-up", help="apply events the views have not seen yet"))
    sp.add_argument("--views", help="comma-separated views (default: all)")
    sp.set_defaults(func=cmd_catch_up)

    sp = with_url(sub.add_parser("status", help="event counts and each view's position and lag"))
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_status)

    sp = with_url(sub.add_parser(
        "verify", help="compare the views with a rebuild, read-only; exit 1 on any difference"))
    sp.add_argument("--json", action="store_true", help="print the differences as JSON")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("demo", help="simulate workflows into an SQLite file and print the four views")
    sp.add_argument("--db", default="biomero-demo.db", help="SQLite file (default: biomero-demo.db, replaced)")
    sp.add_argument("--workflows", type=int, default=5, help="how many workflows (default: 5)")
    sp.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    sp.add_argument("--keep", action="store_true", help="add to an existing file instead of replacing it")
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nbiomero-rs: interrupted", file=sys.stderr)
        return 130
    except (BiomeroError, ValueError, TypeError) as e:
        print(f"biomero-rs {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
