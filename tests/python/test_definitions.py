"""The view definitions are the one source of each view's shape; where a copy
cannot be avoided, it is compared with them here: the stub's row models, the
tables the SQL migrations make on each backend, and what the package derives
from them at run time (the row models, ``ALL``, the demo's tables)."""

import ast
import datetime
import uuid
from pathlib import Path

import pytest

import biomero_rs

STUB = Path(biomero_rs.__file__).parent / "_core.pyi"
PY_TYPE = {"int": "int", "str": "str", "uuid": "uuid.UUID", "datetime": "datetime.datetime"}
# What the constructor accepts for a column: a UUID also as its text.
ARG_TYPE = {**PY_TYPE, "uuid": "_UUIDLike"}
SAMPLE = {"int": 7, "str": "text", "uuid": uuid.UUID(int=42), "datetime": datetime.datetime(2024, 6, 1, 8)}


def _optional(t: str, nullable: bool) -> str:
    return f"Optional[{t}]" if nullable else t


def _stub_class(name: str) -> ast.ClassDef:
    tree = ast.parse(STUB.read_text())
    found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    assert found, f"{name} is not in {STUB.name}"
    return found[0]


DEFS = biomero_rs.view_definitions()


def test_the_registry_names_every_view_once():
    assert biomero_rs.ALL == tuple(d["name"] for d in DEFS)
    for key in ("name", "class_name", "table", "tracking_table", "model"):
        values = [d[key] for d in DEFS]
        assert len(set(values)) == len(values), key
    for d in DEFS:
        cols = d["columns"]
        assert [c["key"] for c in cols] == [True] + [False] * (len(cols) - 1)
        assert not cols[0]["nullable"]
        assert getattr(biomero_rs, d["class_name"]).VIEW_NAME == d["name"]


@pytest.mark.parametrize("d", DEFS, ids=[d["model"] for d in DEFS])
def test_stub_row_model_is_the_view_definition(d):
    cls = _stub_class(d["model"])
    props = {
        f.name: ast.unparse(f.returns)
        for f in cls.body
        if isinstance(f, ast.FunctionDef) and any(ast.unparse(x) == "property" for x in f.decorator_list)
    }
    assert props == {c["name"]: _optional(PY_TYPE[c["kind"]], c["nullable"]) for c in d["columns"]}
    new = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__new__")
    args = new.args.kwonlyargs
    assert [a.arg for a in args] == [c["name"] for c in d["columns"]]
    for a, default, c in zip(args, new.args.kw_defaults, d["columns"]):
        assert ast.unparse(a.annotation) == _optional(ARG_TYPE[c["kind"]], c["nullable"]), a.arg
        assert (default is not None) == c["nullable"], f"{a.arg}: a default exactly where NULL is allowed"


@pytest.mark.parametrize("d", DEFS, ids=[d["model"] for d in DEFS])
def test_runtime_row_model_is_the_view_definition(d):
    cls = getattr(biomero_rs, d["model"])
    assert cls.__tablename__ == d["table"]
    attrs = [n for n, v in vars(cls).items() if isinstance(v, property)]
    assert attrs == [c["name"] for c in d["columns"]]
    for c in d["columns"]:
        assert getattr(cls, c["name"]).__doc__ == c["doc"]
    # Only the columns that may be NULL may be left out, and the values
    # come back as given.
    required = {c["name"]: SAMPLE[c["kind"]] for c in d["columns"] if not c["nullable"]}
    row = cls(**required)
    assert row.to_dict() == {c["name"]: required.get(c["name"]) for c in d["columns"]}
    for name in required:
        with pytest.raises(TypeError, match=name):
            cls(**{k: v for k, v in required.items() if k != name})
    with pytest.raises(TypeError, match="no_such_column"):
        cls(**required, no_such_column=1)


def _columns(db, table):
    """(name, type, NOT NULL) of each column of a table, in order."""
    if db.backend == "sqlite":
        return [(r[1], r[2], bool(r[3])) for r in db.rows(f"PRAGMA table_info({table})")]
    return [
        (name, ty, nullable == "NO")
        for name, ty, nullable in db.rows(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position",
            (table,),
        )
    ]


def test_migrations_make_the_tables_of_the_view_definitions(db):
    biomero_rs.run_migrations(db.url)
    for d in DEFS:
        expected = [(c["name"], c[db.backend], not c["nullable"]) for c in d["columns"]]
        assert _columns(db, d["table"]) == expected, d["table"]


def test_demo_prints_every_column_of_the_definitions(tmp_path, capsys):
    from biomero_rs import cli

    assert cli.main(["demo", "--db", str(tmp_path / "demo.db"), "--workflows", "1"]) == 0
    out = capsys.readouterr().out
    for d in DEFS:
        assert d["table"] in out
        for c in d["columns"]:
            if not (c["key"] and c["kind"] == "uuid"):
                assert c["name"] in out, (d["table"], c["name"])
