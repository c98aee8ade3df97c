"""Switching an unmodified BIOMERO 2.8.3 to biomero_rs.

``activate()`` rebinds the names that ``biomero.slurm_client`` took from
``biomero.eventsourcing``, ``biomero.views``, ``biomero.database`` and
``eventsourcing.system`` (the tracker, the no-op tracker, the four view
classes and their four row models, ``EngineManager``, ``System`` and
``SingleThreadedRunner``) to biomero_rs's, on ``biomero.slurm_client``, on
those modules and on the ``biomero`` package. Every other module of
``biomero`` that holds one of the originals under the same name (for
instance ``biomero.views.EngineManager``) is rebound too, so that no code
path mixes the two implementations.

Before ``biomero`` is imported, ``activate()`` installs an import hook and
the rebinding happens as soon as the ``biomero`` package has finished
importing (its ``__init__`` imports all of the modules above). After it, the
rebinding happens at once. ``deactivate()`` puts every original back.

With ``BIOMERO_RS_ACTIVATE=1`` in the environment, the ``.pth`` file the
package installs (``biomero_rs_activate.pth``) turns activation on at
interpreter start-up: it installs the same hook (``_biomero_rs_hook``)
without importing anything (not even biomero_rs) until ``biomero`` is
imported.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Tuple

import _biomero_rs_hook as _hook  # type: ignore[import-untyped]  # a top-level module (see its docstring)

#: The environment variable read by the start-up hook.
ENV_VAR = "BIOMERO_RS_ACTIVATE"

#: Where each replaced name is defined in the reference.
ORIGINS: Dict[str, Tuple[str, ...]] = {
    "biomero.eventsourcing": ("WorkflowTracker", "NoOpWorkflowTracker"),
    "biomero.views": ("JobAccounting", "JobProgress", "WorkflowProgress", "WorkflowAnalytics"),
    "biomero.database": ("EngineManager", "JobView", "JobProgressView", "WorkflowProgressView", "TaskExecution"),
    "eventsourcing.system": ("System", "SingleThreadedRunner"),
}

#: The modules whose names are rebound (when they are imported).
MODULES: Tuple[str, ...] = (
    "biomero",
    "biomero.slurm_client",
    "biomero.eventsourcing",
    "biomero.views",
    "biomero.database",
    "eventsourcing.system",
)

# (module name, attribute) -> the original object, for deactivate().
_saved: Dict[Tuple[str, str], Any] = {}


def _replacements() -> Dict[str, Any]:
    import biomero_rs

    return {name: getattr(biomero_rs, name) for names in ORIGINS.values() for name in names}


def rebind() -> None:
    """Rebinds every reference original on the imported modules of
    :data:`MODULES` (the import hook calls it once ``biomero`` is imported)."""
    with _hook.lock:
        ours = _replacements()
        originals: Dict[str, Any] = {}
        for module_name, names in ORIGINS.items():
            module = sys.modules.get(module_name)
            for name in names:
                saved = _saved.get((module_name, name))
                value = getattr(module, name, None) if module is not None else None
                if saved is not None:
                    originals[name] = saved
                elif value is not None and value is not ours[name]:
                    originals[name] = value
        for module_name in MODULES:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for name, original in originals.items():
                if getattr(module, name, None) is original:
                    _saved[(module_name, name)] = original
                    setattr(module, name, ours[name])


def activate() -> None:
    """Makes an unmodified ``biomero`` use biomero_rs (idempotent). Works
    before ``biomero`` is imported (the rebinding then happens when it is)
    and after."""
    with _hook.lock:
        _hook.install()
        biomero = sys.modules.get("biomero")
        # A package still running its __init__ is rebound when it finishes.
        if biomero is not None and getattr(biomero, "SlurmClient", None) is not None:
            rebind()


def deactivate() -> None:
    """Puts back every original that :func:`activate` replaced and removes
    the import hook (idempotent)."""
    with _hook.lock:
        _hook.uninstall()
        for (module_name, name), original in list(_saved.items()):
            module = sys.modules.get(module_name)
            if module is not None:
                setattr(module, name, original)
        _saved.clear()


def is_active() -> bool:
    """Whether activation is in force in this process (by :func:`activate`
    or by ``BIOMERO_RS_ACTIVATE`` at start-up)."""
    return bool(_hook.active)


__all__: List[str] = ["ENV_VAR", "MODULES", "ORIGINS", "activate", "deactivate", "is_active", "rebind"]
