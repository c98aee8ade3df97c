"""The ``biomero-rs`` command: migrate, rebuild, catch-up, status, check, verify and demo.

The database URL comes from ``--url`` or ``SQLALCHEMY_URL``. The options
``--url``, ``--json`` (machine-readable output on stdout) and ``--quiet`` (no
progress, no messages on success) go before or after the command.
Exit codes: 0 done, 1 failed (the message says why; for verify: the views
differ; for check: a problem, one line each), 2 bad usage, 130 interrupted, 141 output pipe closed (as a process
ended by SIGPIPE).
Also runs as ``python -m biomero_rs``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

import biomero_rs
from biomero_rs.exceptions import BiomeroError

VIEW_NAMES = list(biomero_rs.ALL)

#: Exit status of a command whose output pipe was closed (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141
#: Exit status of an interrupted command (128 + SIGINT).
EXIT_INTERRUPTED = 130

#: The options every command takes, before or after its name, and their defaults.
GLOBAL_DEFAULTS: Dict[str, Any] = {"url": None, "json": False, "quiet": False}

#: Commands that only read or complete an existing database: on an SQLite file
#: that does not exist they fail instead of creating it.
NEEDS_EXISTING_DATABASE = {"rebuild", "catch-up", "status", "verify", "check"}


class ProgressBar:
    """Events done/total, rate and ETA on stderr (redrawn in place on a terminal).

    Called as ``bar(done, total)``; remembers the last figures (``done``,
    ``total``) so that an interrupted command can say how far it got. With
    ``show=False`` it only remembers.
    """

    def __init__(self, label: str, stream: Optional[TextIO] = None, show: bool = True) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.show = show
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last_print = 0.0
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if not self.show:
            return
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


class CommandError(Exception):
    """A command cannot run as asked; the message says why (exit status 1)."""


def sqlite_file(url: str) -> Optional[str]:
    """The file of an ``sqlite:///`` URL (percent-decoded), or None for
    in-memory databases and other backends."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("sqlite", "sqlite+pysqlite"):
        return None
    path = rest.split("?", 1)[0]
    if not path.startswith("/") or path in ("/", "/:memory:"):
        return None
    return urllib.parse.unquote(path[1:])


def _url(args: argparse.Namespace) -> str:
    url: Optional[str] = args.url or os.environ.get("SQLALCHEMY_URL")
    if not url:
        raise CommandError("no database URL; pass --url or set SQLALCHEMY_URL")
    path = sqlite_file(url)
    if args.command in NEEDS_EXISTING_DATABASE and path is not None and not os.path.exists(path):
        raise CommandError(f"no such SQLite database: {path} (nothing was created; "
                           "`biomero-rs migrate` creates a new one)")
    return url


def _say(args: argparse.Namespace, data: Any, text: Callable[[], None]) -> None:
    """Prints ``data`` as JSON with ``--json``, else runs ``text`` unless ``--quiet``."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif not args.quiet:
        text()


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = biomero_rs.run_migrations(_url(args))
    _say(args, {"applied": applied},
         lambda: print("applied: " + ", ".join(applied) if applied else "view tables are up to date"))
    return 0


def _since(args: argparse.Namespace) -> Optional[str]:
    """The cutoff of --since DATE or --days N (N days before now, UTC)."""
    if getattr(args, "days", None) is not None:
        if args.days < 0:
            raise CommandError(f"--days: expected a number of days >= 0, got {args.days}")
        now = datetime.datetime.now(datetime.timezone.utc)
        return (now - datetime.timedelta(days=args.days)).isoformat()
    since: Optional[str] = getattr(args, "since", None)
    return since


def cmd_rebuild(args: argparse.Namespace) -> int:
    url = _url(args)
    views = _views(args.views)
    since = _since(args)
    bar = ProgressBar("rebuild", show=not (args.quiet or args.json))
    start = time.monotonic()
    try:
        # Always a callback, even when quiet: Ctrl-C is seen between batches.
        n = biomero_rs.rebuild_views(url, views, progress=bar, since=since, wait=args.wait)
    except KeyboardInterrupt:
        raise CommandInterrupted(f"rebuild interrupted after {bar.done:,} of {bar.total:,} events; "
                                 "the views are as they were before it (nothing to clean up)") from None
    secs = time.monotonic() - start
    frm = f" (cutoff {since})" if since else ""
    _say(args, {"views": views, "events": n, "seconds": round(secs, 3), "since": since},
         lambda: print(f"rebuilt {', '.join(views)} from {n:,} events{frm} in {secs:.2f}s"))
    return 0


class CommandInterrupted(Exception):
    """Ctrl-C stopped a command; the message says where things stand (exit status 130)."""


def cmd_catch_up(args: argparse.Namespace) -> int:
    url = _url(args)
    n = biomero_rs.catch_up(url, _views(args.views))
    _say(args, {"events": n}, lambda: print(f"applied {n:,} events"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    s = biomero_rs.status(_url(args))
    # Whether biomero, imported in a process with this environment, uses
    # biomero_rs (BIOMERO_RS_ACTIVATE=1 and the installed start-up hook).
    s["activation"] = "on" if biomero_rs.is_active() else "off"
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    if args.quiet:
        return 0
    print(f"activation: {s['activation']}")
    print(f"backend:  {s['backend']}")
    print(f"database: {s['url']}")
    print(f"events:   {s['events']:,} (last notification id {s['max_notification_id']:,})")
    for topic, n in s["topics"].items():
        print(f"  {topic.split(':', 1)[-1]:<34} {n:>10,}")
    print("views (tracking position, events behind):")
    for name, v in s["views"].items():
        print(f"  {name:<20} {v['position']:>10,}  {v['lag']:>8,} behind")
    if "unfinished" in s:
        print("unfinished:")
        for what, u in s["unfinished"].items():
            oldest = f", oldest started {u['oldest']:%Y-%m-%d %H:%M:%S} UTC" if u["oldest"] else ""
            print(f"  {what:<20} {u['count']:>10,}{oldest}")
        print(f"rebuild:  {s['rebuild'] or 'none running'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.max_lag < 0:
        raise CommandError(f"--max-lag: expected a number of events >= 0, got {args.max_lag}")
    c = biomero_rs.check(_url(args), max_lag=args.max_lag, idle=args.idle)
    if args.json:
        print(json.dumps(c, indent=2, default=str))
    elif c["ok"]:
        if not args.quiet:
            lag = max((v["lag"] for v in c["views"].values()), default=0)
            print(f"ok: schema at {c['schema']['head']}, views at most {lag:,} events behind"
                  f"{', no unfinished work' if args.idle else ''} ({c['seconds'] * 1000:.0f} ms)")
    else:
        # The problems are the answer: printed even with --quiet.
        for line in c["problems"]:
            print(line)
    return 0 if c["ok"] else 1


def cmd_verify(args: argparse.Namespace) -> int:
    diffs = biomero_rs.verify(_url(args))

    def text() -> None:
        for d in diffs:
            if d["column"] is None:
                what = "missing row" if d["live"] is None else "extra row"
                side = d["expected"] if d["live"] is None else d["live"]
                print(f"{d['table']} {d['key']}: {what} {json.dumps(side, default=str)}")
            else:
                print(f"{d['table']} {d['key']} {d['column']}: live {d['live']!r}, "
                      f"expected {d['expected']!r}")
        print(f"{len(diffs)} differences" if diffs else "the views are right")

    # Differences are the answer, printed even with --quiet.
    if args.json:
        print(json.dumps(diffs, indent=2, default=str))
    else:
        text()
    return 1 if diffs else 0


def _table(title: str, rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> None:
    print(f"\n{title} ({len(rows)} rows)")
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def simulate(tracker: biomero_rs.WorkflowTracker, workflows: int, seed: int) -> None:
    """Write ``workflows`` simulated workflows as BIOMERO runs them (transfer,
    convert, run on Slurm, retrieve), about one in five failing; ``seed``
    makes the run repeatable."""
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
                tracker.update_task_status(task, "COMPLETED")
            tracker.complete_task(task, "ok")
        if failed:
            tracker.fail_workflow(wf, "Out of memory")
        else:
            tracker.complete_workflow(wf)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.url:  # an explicit --url (any backend): added to, never emptied
        url: str = args.url
    else:
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
    where = s["url"] if args.url else path  # the URL with its password masked
    tables: Dict[str, Sequence[Any]] = {
        "biomero_workflow_progress_view": biomero_rs.WorkflowProgress(url).list_workflows(),  # newest first
        "biomero_job_view": biomero_rs.JobAccounting(url).list_jobs(),
        "biomero_job_progress_view": biomero_rs.JobProgress(url).list_job_progress(),
        "biomero_task_execution": sorted(biomero_rs.WorkflowAnalytics(url).list_task_executions(),
                                         key=lambda t: t.start_time),
    }
    if args.json:
        print(json.dumps({"db": where, "workflows": args.workflows, "events": s["events"], "seconds": round(secs, 3),
                          "tables": {k: [r.to_dict(json=True) for r in v] for k, v in tables.items()}}, indent=2))
        return 0
    if args.quiet:
        return 0
    print(f"wrote {s['events']:,} events for {args.workflows} workflows into {where} in {secs:.2f}s")
    # Every column of each view's definition, but a UUID key (too wide to read).
    columns = {
        str(d["table"]): [str(c["name"]) for c in d["columns"] if not (c["key"] and c["kind"] == "uuid")]
        for d in biomero_rs.view_definitions()
    }
    for name, rows in tables.items():
        _table(name, [r.to_dict() for r in rows], columns[name])
    return 0


def _add_global_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # SUPPRESS: an option not given after the command keeps the value given before it.
    p.add_argument("--url", default=argparse.SUPPRESS, help="database URL (default: $SQLALCHEMY_URL)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the result as JSON on stdout (for scripts)")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bar and no messages on success (errors still go to stderr)")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``biomero-rs``: one subcommand per command,
    each taking the global options too."""
    p = argparse.ArgumentParser(prog="biomero-rs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"biomero-rs {biomero_rs.__version__}")
    _add_global_options(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_url(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return _add_global_options(sp)

    sp = with_url(sub.add_parser("migrate", help="create or upgrade the biomero_* view tables"))
    sp.set_defaults(func=cmd_migrate)

    sp = with_url(sub.add_parser(
        "rebuild", help="replay the events into new view tables beside the live ones and switch at once"))
    sp.add_argument("--views", help=f"comma-separated views (default: all of {','.join(VIEW_NAMES)})")
    cutoff = sp.add_mutually_exclusive_group()
    cutoff.add_argument("--since", metavar="YYYY-MM-DD",
                        help="replay only from the first event at or after this date (UTC) or ISO time")
    cutoff.add_argument("--days", type=int, metavar="N", help="replay only the events of the last N days")
    sp.add_argument("--wait", action="store_true",
                    help="wait for a rebuild that runs already (default: refuse, naming it)")
    sp.set_defaults(func=cmd_rebuild)

    sp = with_url(sub.add_parser("catch-up", help="apply events the views have not seen yet"))
    sp.add_argument("--views", help="comma-separated views (default: all)")
    sp.set_defaults(func=cmd_catch_up)

    sp = with_url(sub.add_parser("status", help="event counts and each view's position and lag"))
    sp.set_defaults(func=cmd_status)

    sp = with_url(sub.add_parser(
        "check", help="read-only health check: exit 0 when the views are current, else 1 with one line per problem"))
    sp.add_argument("--max-lag", type=int, default=0, metavar="N",
                    help="events a view may be behind the log (default: 0)")
    sp.add_argument("--idle", action="store_true",
                    help="also fail while any workflow or task is unfinished (to gate an upgrade)")
    sp.set_defaults(func=cmd_check)

    sp = with_url(sub.add_parser(
        "verify", help="compare the views with a rebuild, read-only; exit 1 on any difference"))
    sp.set_defaults(func=cmd_verify)

    sp = with_url(sub.add_parser("demo", help="simulate workflows into a database and print the four views"))
    sp.add_argument("--db", default="biomero-demo.db",
                    help="SQLite file when no --url is given (default: biomero-demo.db, replaced)")
    sp.add_argument("--workflows", type=int, default=5, help="how many workflows (default: 5)")
    sp.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    sp.add_argument("--keep", action="store_true", help="add to an existing file instead of replacing it")
    sp.set_defaults(func=cmd_demo)
    return p


def _quiet_broken_pipe() -> int:
    # Output nobody reads: point stdout at /dev/null so that the flush at exit
    # does not fail again, and end as a process stopped by SIGPIPE would.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``biomero-rs`` command line (``argv`` defaults to
    ``sys.argv[1:]``) and return its exit status."""
    args = build_parser().parse_args(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except CommandInterrupted as e:
        print(f"\nbiomero-rs {args.command}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"\nbiomero-rs {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CommandError, BiomeroError, ValueError, TypeError, OSError) as e:
        print(f"biomero-rs {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
