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


def test_every_section_the_readme_points_to_exists():
    """README's `see "..."` names a heading of README (or its start: "Scale-out"), or a
    bullet's label ("- Nested selection: ..."); one named a section that does not exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    headings = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    labels = {m.group(1) for line in lines if (m := re.match(r"- ([^:`]+):", line))}
    pointed = set(re.findall(r'see "([^"]+)"', text))
    missing = sorted(name for name in pointed
                     if name not in labels and not any(h == name or h.startswith(f"{name}:")
                                                       for h in headings))
    assert pointed and not missing, missing
