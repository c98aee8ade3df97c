"""The crate's architecture check (scripts/check_layers.py): the source tree
passes it, and it catches an import circle and a dependency that points up."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_layers.py"


def run(src):
    return subprocess.run([sys.executable, str(CHECK), str(src)], capture_output=True, text=True)


def tree(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "src"


def test_the_crate_has_no_circles_and_points_one_way():
    out = run(ROOT / "src")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no import circles" in out.stdout


def test_a_circle_and_an_upward_dependency_are_reported(tmp_path):
    src = tree(tmp_path, {
        "lib.rs": "mod domain;\nmod store;\n",
        "domain/mod.rs": "pub mod a;\npub mod b;\n",
        "domain/a.rs": "use crate::domain::b::B;\npub struct A;\n",
        "domain/b.rs": "use crate::domain::a::A;\nuse crate::store::S;\npub struct B;\n",
        "store/mod.rs": "pub struct S;\n#[cfg(test)]\nmod tests {\n    use crate::domain::a::A;\n}\n",
    })
    out = run(src)
    assert out.returncode == 1
    assert "src/domain/a.rs" in out.stdout and "src/domain/b.rs" in out.stdout and "circle" in out.stdout
    assert "layer: " in out.stdout and "(domain) -> " in out.stdout and "(store): S" in out.stdout


def test_test_modules_do_not_count(tmp_path):
    src = tree(tmp_path, {
        "lib.rs": "mod domain;\nmod store;\n",
        "domain/mod.rs": "pub struct D;\n#[cfg(test)]\nmod tests {\n    use crate::store::S;\n}\n",
        "store/mod.rs": "use crate::domain::D;\npub struct S;\n",
    })
    out = run(src)
    assert out.returncode == 0, out.stdout
