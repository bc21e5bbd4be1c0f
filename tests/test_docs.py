"""docs/architecture.md lists every dataset of the catalog, as README says it does."""

import fnmatch
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_every_catalog_entry_is_described_in_the_architecture_page():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    # `<layer>_metrics`, `base_{learner}_logged_model`, `evaluation_plot_*`: one row per pattern
    patterns = [re.sub(r"<[^>]+>|\{[^}]+\}", "*", token) for token in re.findall(r"`([^`\s]+)`", doc)]
    missing = []
    for path in sorted((ROOT / "conf" / "base").glob("catalog*.yml")):
        for name in yaml.safe_load(path.read_text(encoding="utf-8")) or {}:
            if name.startswith("_"):
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", name)
            if not any(fnmatch.fnmatchcase(concrete, p) for p in patterns):
                missing.append(f"{name} ({path.name})")
    assert not missing, f"not in docs/architecture.md: {', '.join(missing)}"
