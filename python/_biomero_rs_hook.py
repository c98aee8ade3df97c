"""The import hook of ``biomero_rs.activate()`` (part of biomero_rs).

A top-level module on purpose: ``biomero_rs_activate.pth`` imports it at
interpreter start-up when ``BIOMERO_RS_ACTIVATE`` is set, and it must not
load biomero_rs (or anything else) before ``biomero`` is imported. When the
``biomero`` package has finished importing, it calls
``biomero_rs.activation.rebind()``.
"""

import importlib.abc
import importlib.machinery
import sys
import threading
from types import ModuleType
from typing import Any, Optional, Sequence

#: Whether activation is in force (set by install(), cleared by uninstall()).
active = False
lock = threading.RLock()


class _Loader(importlib.abc.Loader):
    """The ``biomero`` package's own loader; rebinds once the package ran."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # The package keeps its real loader (importlib.resources reads it).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        with lock:
            if active:
                from biomero_rs import activation

                activation.rebind()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the ``biomero`` package while activation is on."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != "biomero" or not active:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, Finder):
                continue
            find = getattr(finder, "find_spec", None)
            spec: Optional[importlib.machinery.ModuleSpec] = (
                find(fullname, path, target) if find is not None else None
            )
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Turns activation on: ``biomero``, when it is imported, uses biomero_rs."""
    global active
    with lock:
        active = True
        if not any(isinstance(f, Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, Finder())


def uninstall() -> None:
    """Turns activation off and removes the hook."""
    global active
    with lock:
        active = False
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, Finder)]
