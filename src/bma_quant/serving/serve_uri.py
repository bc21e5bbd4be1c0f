"""The model `make serve` serves: the last run's registered version, else its data set's champion,
else why there is none (`python -m bma_quant.serving.serve_uri [registration.json]`).

Prints the URI on stdout (exit 0), or one line on stderr naming what to pass instead (exit 1):
`mlflow models serve` on an alias that does not exist ended in a 40-line MLflow traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bma_quant.serving.model_source import ModelSourceError, registry_version

DEFAULT_REGISTRATION = Path("data") / "08_reporting" / "model_registration.json"
PASS_A_MODEL = "pass MODEL_URI=models:/<name>@champion or models:/<name>/<version>"


def served_uri(registration_path: str | Path = DEFAULT_REGISTRATION) -> tuple[str, str | None]:
    """(the URI to serve, a note to print beside it or None); ModelSourceError saying why there
    is none."""
    path = Path(registration_path)
    if not path.is_file():
        raise ModelSourceError(f"no registered model: run 'make run' first (or {PASS_A_MODEL})")
    report = json.loads(path.read_text())
    if report.get("model_uri"):
        return str(report["model_uri"]), None
    reason = report.get("reason") or "see model_registration.json"
    name = report.get("model_name")
    if not name:
        raise ModelSourceError(f"the last run registered no model ({reason}): {PASS_A_MODEL}")
    champion = f"models:/{name}@champion"
    try:
        _, version = registry_version(champion)
    except ModelSourceError as missing:
        raise ModelSourceError(f"the last run registered no model ({reason}), and its data set's "
                               f"model has no champion: {missing}") from None
    return champion, (f"the last run registered no model ({reason}): serving its data set's "
                      f"champion, {name} version {version}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        uri, note = served_uri(args[0] if args else DEFAULT_REGISTRATION)
    except ModelSourceError as error:
        print(error, file=sys.stderr)
        return 1
    if note:
        print(note, file=sys.stderr)
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
