"""Kedro's config loader, with a YAML error in a conf file said in one line: the file, the
line and column as an editor counts them (from 1), and what is wrong. Kedro's own message gives
0-based positions, and a duplicate key inside one file names no file at all. A section that
conf/base gives as a mapping set to a list in another environment or `--params` (or the other
way round) is said the same way: OmegaConf's merge failed with a traceback naming no key. A
config file that no pattern reads (`conf/local/params.yml`) is warned about once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

logger = logging.getLogger(__name__)

CONFIG_SUFFIXES = (".yml", ".yaml", ".json")  # what Kedro's loader reads
# kedro-mlflow's mlflow.yml; a logging.yml that KEDRO_LOGGING_CONFIG may point at
PLUGIN_PATTERNS = ("mlflow*", "mlflow*/**", "**/mlflow*", "logging*")


class ConfigFileError(ValueError):
    """A conf file that is not valid YAML (syntax, a key twice in one mapping)."""


def describe_yaml_error(path: Path, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = getattr(error, "problem", None) or str(error)
    context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and start is not None:  # where the unclosed bracket or the mapping began
        what += f" ({context} from line {start.line + 1}, column {start.column + 1})"
    return f"{path.as_posix()}{where}: {what} (fix the file; nothing was run)"


def first_invalid_file(conf_path: str | Path, patterns: Iterable[str]) -> str | None:
    """The first conf file under `conf_path` matching `patterns` that does not load, described;
    None when every one loads."""
    root = Path(conf_path)
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                OmegaConf.load(path)
            except yaml.YAMLError as error:
                return describe_yaml_error(path, error)
    return None


def unread_files(folder: Path, patterns: Iterable[str]) -> list[Path]:
    """Config files under `folder` that none of `patterns` (every kind's) matches: Kedro loads
    them for nothing, so their settings are silently ignored (`params.yml` beside the
    `parameters*` pattern)."""
    if not folder.is_dir():
        return []
    matched = {path for pattern in patterns for path in folder.glob(pattern)}
    # `parameters*/**` matches the folder (Python 3.11's glob gives no files for a trailing
    # `**`): Kedro reads every file under it
    read = matched | {inner for path in matched if path.is_dir() for inner in path.rglob("*")}
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.suffix.lower() in CONFIG_SUFFIXES
                  and not path.name.startswith(".") and path not in read)


def _plain_merge(base: dict, other: Mapping) -> dict:
    """`other` over `base`, key by key, without OmegaConf's container checks."""
    out = dict(base)
    for key, value in other.items():
        out[key] = (_plain_merge(out[key], value)
                    if isinstance(out.get(key), dict) and isinstance(value, Mapping) else value)
    return out


def _loaded(folder: Path, patterns: Iterable[str]) -> dict:
    """The files of `folder` matching `patterns`, merged as plain containers ({} on none)."""
    out: dict = {}
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if path.is_file() and not path.name.startswith("."):
                loaded = OmegaConf.to_container(OmegaConf.load(path))
                out = _plain_merge(out, loaded if isinstance(loaded, dict) else {})
    return out


def container_clash(base: Mapping, given: Mapping, prefix: str = "") -> tuple[str, Any] | None:
    """The first dotted key that is a mapping on one side and a list on the other, with the
    value `given` sets."""
    for key, value in given.items():
        if key not in base:
            continue
        path, known = f"{prefix}{key}", base[key]
        if isinstance(known, Mapping) and isinstance(value, Mapping):
            if (found := container_clash(known, value, f"{path}.")) is not None:
                return found
        elif (isinstance(known, Mapping) and isinstance(value, list | tuple)) or (
                isinstance(known, list | tuple) and isinstance(value, Mapping)):
            return path, value
    return None


def _kind(value: Any) -> str:
    return "mapping" if isinstance(value, Mapping) else "list"


class ProjectConfigLoader(OmegaConfigLoader):
    _unread_said = False

    def _warn_unread_files(self) -> None:
        """Once per loader: each environment's config files that no kind's pattern reads."""
        if self._unread_said:
            return
        self._unread_said = True
        # kedro-mlflow adds its pattern after the context is made, maybe after this first read
        patterns = [*(p for kind in self.config_patterns.values() for p in kind),
                    *PLUGIN_PATTERNS]
        names = sorted({p.split("*")[0] + "*" if "*" in p else p for p in patterns
                        if not p.startswith("**")})
        root = Path(str(self.conf_source))
        for env in dict.fromkeys((str(self.base_env), str(self.env or self.default_run_env))):
            for path in unread_files(root / env, patterns):
                logger.warning(
                    "conf/%s is read by no one: Kedro reads the conf files named %s, so its "
                    "settings are ignored (rename it: parameters*.yml for parameters, "
                    "catalog*.yml for datasets)", path.relative_to(root).as_posix(),
                    ", ".join(names))

    def _clash_described(self, key: str) -> str | None:
        """Which setting makes the merge of `key`'s files fail, described, or None."""
        patterns = list(self.config_patterns.get(key, ()))
        root = Path(str(self.conf_source))
        base = _loaded(root / str(self.base_env), patterns)
        env = str(self.env or self.default_run_env)
        sources = [(f"conf/{env}", _loaded(root / env, patterns))] if env != self.base_env else []
        merged = _plain_merge(base, sources[0][1]) if sources else base
        for where, given, against in (*((w, g, base) for w, g in sources),
                                      ("--params", self.runtime_params or {}, merged)):
            found = container_clash(against, given)
            if found is not None:
                path, value = found
                known = against
                for part in path.split("."):
                    known = known[part]
                return (f"{path} is a {_kind(known)} in the project's conf, and {where} sets it "
                        f"to a {_kind(value)} ({value!r}): give it as a {_kind(known)} (set its "
                        f"keys one by one, e.g. --params \"{path}.<key>=...\"); nothing was run")
        return None

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key == "parameters":
            self._warn_unread_files()
        try:
            return super().__getitem__(key)
        except TypeError as error:
            described = ("incompatible container types" in str(error)
                         and self._clash_described(key))
            if described:
                raise ConfigFileError(described) from error
            raise
        except yaml.YAMLError as error:
            patterns = list(self.config_patterns.get(key, ()))
            for env in (self.base_env, self.env or self.default_run_env):
                described = first_invalid_file(Path(str(self.conf_source)) / str(env), patterns)
                if described is not None:
                    raise ConfigFileError(described) from error
            raise
