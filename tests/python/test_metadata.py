"""Package metadata: the sdist and the wheel pass ``twine check --strict``
and carry the licence, project URLs, author and classifiers; the stubs and
``py.typed`` ship; release builds are stripped."""

import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name):
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (scripts/test.sh installs it)")
    return path


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    maturin = _tool("maturin")
    for args in (["sdist"], ["build", "--auditwheel", "skip"]):  # dev profile: reuses the built extension
        r = subprocess.run([maturin, *args, "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    sdist = next(out.glob("*.tar.gz"))
    wheel = next(out.glob("*.whl"))
    return sdist, wheel


def test_twine_check_strict_passes_on_the_wheel_and_the_sdist(dists):
    r = subprocess.run([_tool("twine"), "check", "--strict", *map(str, dists)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2


def _wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(meta)), names


def test_wheel_metadata_has_licence_urls_author_and_classifiers(dists):
    meta, names = _wheel_metadata(dists[1])
    classifiers = meta.get_all("Classifier")
    for c in ["Typing :: Typed", "License :: OSI Approved :: Apache Software License",
              "Operating System :: POSIX :: Linux", "Programming Language :: Python :: 3 :: Only"]:
        assert c in classifiers
    requires = meta["Requires-Python"].strip()
    assert requires == ">=3.9"
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert meta["License"] == "Apache-2.0"
    assert meta.get_all("Project-URL") and all("https://" in u for u in meta.get_all("Project-URL"))
    assert meta["Author"]
    assert any(n.endswith("/LICENSE") for n in names if ".dist-info/" in n)
    for shipped in ["biomero_rs/py.typed", "biomero_rs/_core.pyi", "biomero_rs/__main__.py", "biomero_rs/cli.py"]:
        assert shipped in names


def test_sdist_ships_licence_and_changelog(dists):
    with tarfile.open(dists[0]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "python/biomero_rs/_core.pyi"} <= names
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and "## [0.1.0]" in changelog


def test_release_builds_are_stripped():
    tomllib = pytest.importorskip("tomllib")
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert cargo["profile"]["release"]["strip"] in (True, "symbols")
