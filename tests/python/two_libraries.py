"""The two-library scenario, run as a script in its own process.

    python two_libraries.py DB_FILE [DIR_FIRST_ON_SYS_PATH]

biomero_rs writes 5 workflows, Python's sqlite3 module opens the same file,
reads and closes it, biomero_rs writes 5 more; then another process opens the
file and lists the workflows it sees. Prints one JSON line: {"written": [...],
"seen": [...], ...} (workflow ids), or {"error": "Type: message"} when
biomero_rs refuses the file. DIR_FIRST_ON_SYS_PATH puts a directory first on
sys.path (a test's other `_sqlite3` module).
"""

import json
import subprocess
import sys

if len(sys.argv) > 2:
    sys.path.insert(0, sys.argv[2])

import sqlite3  # noqa: E402

import biomero_rs  # noqa: E402

READER = """
import json, sqlite3, sys, uuid
conn = sqlite3.connect(sys.argv[1])
rows = conn.execute("SELECT originator_id FROM workflowtracker_events").fetchall()
conn.close()
print(json.dumps(sorted({str(uuid.UUID(bytes=bytes(r[0]))) for r in rows})))
"""


def main() -> None:
    db = sys.argv[1]
    try:
        tracker = biomero_rs.WorkflowTracker(f"sqlite:///{db}")
    except biomero_rs.BiomeroError as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    written = [str(tracker.initiate_workflow(f"wf{i}", "two libraries", 1, 2)) for i in range(5)]
    conn = sqlite3.connect(db)
    between = conn.execute("SELECT count(*) FROM workflowtracker_events").fetchone()[0]
    conn.close()
    written += [str(tracker.initiate_workflow(f"wf{i}", "two libraries", 1, 2)) for i in range(5, 10)]
    seen = subprocess.run(
        [sys.executable, "-c", READER, db], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    print(json.dumps({
        "written": written,
        "seen": json.loads(seen),
        "seen_by_sqlite3_between": between,
        "sqlite3_module": sys.modules["_sqlite3"].__file__,
        "biomero_rs": biomero_rs.__file__,
    }))


if __name__ == "__main__":
    main()
