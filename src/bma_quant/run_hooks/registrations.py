"""Registrations of the running `kedro run`: taken back when it fails or is stopped, kept when it
succeeds (the staging hooks call `undo_all` and `forget`). A killed run's chain must not stay in
the registry as its champion. Each registration is also written to a journal in the run's staging
folder, so one killed with SIGKILL (no hook runs) is taken back by the next run's clean-up
(`undo_journal`). No heavy import: the hooks load this module on every run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

JOURNAL_FILE = ".registrations.jsonl"

_PENDING: list[Callable[[], str]] = []
_journal: Path | None = None


def journal_to(folder: Path | None) -> None:
    """Write this run's registrations to ``folder``'s journal (None: keep them in memory only)."""
    global _journal
    _journal = None if folder is None else Path(folder) / JOURNAL_FILE


def add(undo: Callable[[], str], record: dict[str, Any] | None = None) -> None:
    """Remember how to take back one registration (``undo`` says what it took back); ``record``
    (what `undo_journal` needs: name, version, alias, replaced, tracking and registry URI) goes
    to the journal, flushed to disk before the run goes on."""
    _PENDING.append(undo)
    if record is None or _journal is None:
        return
    try:
        with _journal.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(record) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
    except OSError as error:  # the in-memory undo still covers failures and interrupts
        logger.warning("could not journal a registration to %s: %s", _journal, error)


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


class NotThisRunsVersion(Exception):  # noqa: N818 - reads as what was found
    """The journaled version number now belongs to another run (the model was re-created)."""


def not_found(error: Exception) -> bool:
    """The registry answered that a model, version or alias does not exist (MLflow says so with
    RESOURCE_DOES_NOT_EXIST, or for an alias INVALID_PARAMETER_VALUE '... alias ... not found').
    Any other failure, a Ctrl-C inside the store's call included, is not an answer."""
    code = getattr(error, "error_code", None)
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in str(error) and "not found" in str(error))


def alias_version(client, name: str, alias: str) -> str | None:
    """The version holding ``alias`` of ``name``; None when the registry says there is none.
    Any other error is raised: taken as "no alias", a Ctrl-C inside the lookup let a run
    promote itself over the champion and its undo then delete the champion's alias."""
    from mlflow.exceptions import MlflowException

    if not alias:  # a registration that set none
        return None
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if not_found(error):
            return None
        raise


def unregister_run(client, name: str, alias: str, replaced: str | None, run_id: str) -> str:
    """`unregister` every version of ``name`` registered from ``run_id``: a run stopped inside
    `register_model` may have made a version whose number it never received."""
    quoted = name.replace("'", "\\'")
    versions = client.search_model_versions(f"name = '{quoted}' and run_id = '{run_id}'")
    if not versions:
        return f"{name}: no version of the run (stopped before one was made)"
    return "; ".join(unregister(client, name, str(v.version), alias, replaced, run_id)
                     for v in sorted(versions, key=lambda v: -int(v.version)))


REPLACED_BY = "replaced_by"  # tag of a champion another version replaced: that version


def _replaced_note(version: str) -> str:
    return f"\n\nReplaced as champion by version {version}."


def mark_replaced(client, name: str, old: str, new: str) -> None:
    """Say on a champion that ``new`` replaced it (a tag, and its description, which still read
    "champion: yes" in the registry's list). A note: a store that refuses it is warned about,
    never fails the run (whose registration is done)."""
    try:
        description = client.get_model_version(name, old).description or ""
        client.update_model_version(name, old, description=description + _replaced_note(new))
        client.set_model_version_tag(name, old, REPLACED_BY, str(new))
    except Exception as error:  # noqa: BLE001 - the alias moved; this is its note
        logger.warning("%s version %s was replaced as champion by version %s, but the note "
                       "saying so could not be written (%s)", name, old, new, error)


def unmark_replaced(client, name: str, old: str, new: str) -> None:
    """Take `mark_replaced` back: ``new`` was unregistered and ``old`` is champion again."""
    try:
        if client.get_model_version(name, old).tags.get(REPLACED_BY) == str(new):
            client.delete_model_version_tag(name, old, REPLACED_BY)
        description = client.get_model_version(name, old).description or ""
        if description.endswith(_replaced_note(new)):
            client.update_model_version(name, old,
                                        description=description[:-len(_replaced_note(new))])
    except Exception as error:  # the alias is back: a stale note is said, not fatal
        logger.warning("%s version %s is champion again but still says it was replaced by "
                       "version %s (%s)", name, old, new, error)


def unregister(client, name: str, version: str, alias: str, replaced: str | None,
               run_id: str | None = None) -> str:
    """Delete ``version`` of ``name`` (only if it was made by ``run_id``, when given); give
    ``alias`` back to the version it replaced when the alias is still on the deleted version
    (another run may have moved it since); drop the registered model when that version was its
    only one."""
    if run_id is not None and client.get_model_version(name, version).run_id != run_id:
        raise NotThisRunsVersion(f"{name} version {version} is another run's now: left alone")
    holder = alias_version(client, name, alias)  # None: stopped right after registering
    client.delete_model_version(name, version)
    restored = replaced is not None and holder == str(version)
    if restored:
        client.set_registered_model_alias(name, alias, replaced)
        unmark_replaced(client, name, replaced, str(version))
    if not client.search_model_versions(f"name = '{name}'"):
        client.delete_registered_model(name)
    return f"{name} version {version} (@{alias}" + (f" back on version {replaced})"
                                                    if restored else ")")


def undo_journal(path: Path) -> tuple[list[str], int]:
    """Take back the registrations a killed run journaled, newest first: (what was taken back,
    how many could not be: the store did not answer)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return [], 0
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by the kill: its version is found by no one
            logger.warning("skipped an unreadable line of %s", path)
    if not records:
        return [], 0
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    undone, failed = [], 0
    for record in reversed(records):
        try:
            client = MlflowClient(tracking_uri=record["tracking_uri"],
                                  registry_uri=record["registry_uri"])
            if record.get("version") is None:  # journaled before the version was made
                undone.append(unregister_run(client, record["name"], record["alias"],
                                             record.get("replaced"), record["run_id"]))
            else:
                undone.append(unregister(client, record["name"], str(record["version"]),
                                         record["alias"], record.get("replaced"),
                                         record.get("run_id")))
        except (NotThisRunsVersion, MlflowException) as error:
            gone = isinstance(error, NotThisRunsVersion) or \
                getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"
            if not gone:  # the store did not answer: try again next time
                failed += 1
            (logger.warning if gone else logger.error)(
                "did not take back %s version %s of a killed run: %s", record.get("name"),
                record.get("version"), error)
        except Exception as error:  # the store does not answer: try again next time
            failed += 1
            logger.error("could not take back %s version %s of a killed run: %s",
                         record.get("name"), record.get("version"), error)
    return undone, failed
