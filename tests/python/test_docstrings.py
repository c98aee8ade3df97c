"""Every public name of biomero_rs, and every public method and attribute of
its classes, has a docstring that ``help()`` shows; none points to a file the
package does not ship."""

import inspect
import re

import pytest

import biomero_rs
import biomero_rs.cli
import biomero_rs.compat

MIN_LENGTH = 15  # shorter is a label, not an explanation


def _public_members(cls):
    # Members inherited from the package's own classes too (the row models
    # share their base's methods).
    members = {}
    for klass in reversed(cls.__mro__):
        if klass is cls or klass.__module__.startswith("biomero_rs"):
            members.update(vars(klass))
    for name, obj in members.items():
        if name.startswith("_"):
            continue  # constructor arguments are the class docstring's to explain
        if isinstance(obj, str) or (not callable(obj) and not inspect.isdatadescriptor(obj)
                                    and not isinstance(obj, (classmethod, staticmethod))):
            continue  # constants (VIEW_NAME, __tablename__, status strings) document themselves by value
        yield name, obj


def _documented():
    """(qualified name, docstring) of every public name and member to check."""
    items = []
    names = dict.fromkeys(biomero_rs.__all__)
    names.update(dict.fromkeys(biomero_rs._core.__all__))
    names.update(dict.fromkeys(biomero_rs.compat.__all__))
    for name in names:
        obj = getattr(biomero_rs, name, None) or getattr(biomero_rs._core, name, None) \
            or getattr(biomero_rs.compat, name)
        if isinstance(obj, (str, tuple)):
            continue  # __version__, ALL
        items.append((name, inspect.getdoc(obj)))
        if inspect.isclass(obj):
            for member, value in _public_members(obj):
                doc = value.__doc__ if inspect.isdatadescriptor(value) else inspect.getdoc(getattr(obj, member))
                items.append((f"{name}.{member}", doc))
    for name in ("main", "build_parser", "sqlite_file", "simulate", "ProgressBar"):
        items.append((f"cli.{name}", inspect.getdoc(getattr(biomero_rs.cli, name))))
    return items


def _text(doc):
    # PyO3 puts the text signature first ("name(a, b)\n--\n\n"); help() shows the rest.
    if doc and "\n--\n" in doc:
        doc = doc.split("\n--\n", 1)[1]
    return (doc or "").strip()


def test_every_public_name_and_member_has_a_docstring():
    missing = [name for name, doc in _documented() if len(_text(doc)) < MIN_LENGTH]
    assert not missing, f"{len(missing)} without a docstring: {missing}"


def test_the_walk_covers_the_tracker_and_the_views():
    names = {n for n, _ in _documented()}
    assert {"WorkflowTracker", "WorkflowTracker.initiate_workflow", "WorkflowTracker.repository",
            "JobAccounting.get_jobs", "Task.status", "JobView.to_dict", "EngineManager.get_session",
            "rebuild_views"} <= names
    assert len(names) > 120


def test_docstrings_name_no_unshipped_file():
    for name, doc in _documented():
        for ref in re.findall(r"\b[\w/.-]+\.(?:md|rst|txt)\b", _text(doc)):
            pytest.fail(f"{name}'s docstring points to {ref}, which is not in the package")


def test_help_shows_the_tracker_documentation():
    text = pydoc_text(biomero_rs.WorkflowTracker)
    assert "initiate_workflow" in text and "Raises" in text and "Returns" in text


def pydoc_text(obj):
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)
