"""Keeps biomero_rs's logging in step with Python's ``logging``.

biomero_rs's Rust code logs through Python's ``logging``, caching each
logger's effective level so that a disabled record costs no call into
Python. ``logging`` clears its own level caches (``Manager._clear_cache``)
whenever a level changes (``setLevel``, ``basicConfig(level=...)``,
``dictConfig``, ``logging.disable``, pytest's ``caplog.at_level``);
:func:`install` makes that also clear biomero_rs's cache, so levels are
honoured whenever logging is configured and the cost stays with the
reconfiguration, not with each record.

Records keep the reference's logger names: the tracker's go to
``biomero.eventsourcing``, the projectors' to ``biomero.views``; the rest
(store, migrations) to ``biomero_rs.*``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from biomero_rs import _core

_MARK = "_biomero_rs_resets"


def install() -> None:
    """Wraps ``logging.Manager._clear_cache`` once (idempotent)."""
    manager_cls = logging.Manager
    original: Callable[..., Any] = getattr(manager_cls, "_clear_cache", None)  # type: ignore[assignment]
    if original is None or getattr(original, _MARK, False):
        return

    def _clear_cache(self: logging.Manager, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            _core.reset_logging_cache()

    setattr(_clear_cache, _MARK, True)
    setattr(manager_cls, "_clear_cache", _clear_cache)
    _core.reset_logging_cache()


install()

__all__ = ["install"]
