"""Kedro's config loader, with a YAML error in a conf file said in one line: the file, the
line and column as an editor counts them (from 1), and what is wrong. Kedro's own message gives
0-based positions, and a duplicate key inside one file names no file at all."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


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


class ProjectConfigLoader(OmegaConfigLoader):
    def __getitem__(self, key: str) -> dict[str, Any]:
        try:
            return super().__getitem__(key)
        except yaml.YAMLError as error:
            patterns = list(self.config_patterns.get(key, ()))
            for env in (self.base_env, self.env or self.default_run_env):
                described = first_invalid_file(Path(str(self.conf_source)) / str(env), patterns)
                if described is not None:
                    raise ConfigFileError(described) from error
            raise
