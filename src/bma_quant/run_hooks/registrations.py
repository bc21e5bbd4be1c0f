"""Registrations of the running `kedro run`: taken back when it fails or is stopped, kept when it
succeeds (the staging hooks call `undo_all` and `forget`). A killed run's chain must not stay in
the registry as its champion. No heavy import: the hooks load this module on every run."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_PENDING: list[Callable[[], str]] = []


def add(undo: Callable[[], str]) -> None:
    """Remember how to take back one registration (``undo`` says what it took back)."""
    _PENDING.append(undo)


def undo_all() -> list[str]:
    """Take back this run's registrations, newest first; what was taken back, in words."""
    undone = []
    while _PENDING:
        undo = _PENDING.pop()
        try:
            undone.append(undo())
        except Exception as error:  # the store is gone, or the version changed meanwhile
            logger.error("could not take back a registration of this run: %s", error)
    if undone:
        logger.warning("run failed: took back its registration of %s", "; ".join(undone))
    return undone


def forget() -> None:
    """The run succeeded (or a new one starts): its registrations stay."""
    _PENDING.clear()
