"""`BENCH_SIZE=small make bench` is a quick check that writes nothing (benchmarks/results.md):
bench_chain ran S, M and L (225 s and 7 GiB at L), rewrote its section and logged to the
project's MLflow store, and the multi-seed studies ran in full."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_script_make_bench_runs_small_honours_small_mode():
    from benchmarks.run_benchmarks import HERE  # noqa: F401  (the runner imports cleanly)

    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        text = script.read_text(encoding="utf-8")
        if "SMALL" not in text and "publish" not in text:
            continue  # skipped by the runner in small mode
        tree = ast.parse(text)
        writes = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and getattr(node.func, "id", getattr(node.func, "attr", "")) in
                  ("write_section", "log_to_mlflow")]
        if writes:  # each such call sits under an `if SMALL` / `else` branch
            guarded = {id(call) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "SMALL" in ast.unparse(node.test)
                       for branch in (node.body, node.orelse) for part in branch
                       for call in ast.walk(part)}
            assert all(id(call) in guarded for call in writes), script.name


def test_the_chain_benchmark_runs_s_only_in_small_mode(monkeypatch):
    import importlib
    import sys

    monkeypatch.setenv("BENCH_SIZE", "small")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    for name in ("_common", "bench_chain"):
        sys.modules.pop(name, None)
    chain = importlib.import_module("bench_chain")
    calls = []
    monkeypatch.setattr(chain, "run_chain", lambda size, source: calls.append(size) or {
        "size": size, "tickers": 1, "days": 1, "wall_s": 1.0})
    monkeypatch.setattr(chain, "lightgbm_reference", lambda *a: {"wall_s": 1.0})
    monkeypatch.setattr(chain, "markdown", lambda *a: "table")
    monkeypatch.setattr(chain, "write_section", lambda *a: calls.append("written"))
    monkeypatch.setattr(chain, "log_to_mlflow", lambda *a: calls.append("logged"))
    assert chain.main() == 0
    assert calls == ["S"]
    for name in ("_common", "bench_chain"):
        sys.modules.pop(name, None)


def test_the_benchmarks_call_each_node_with_the_arguments_it_takes():
    """The layer benchmarks call node functions directly: bench_evaluation and bench_stacking
    failed with a missing argument after their nodes gained one (`make bench` reported it; no
    test did)."""
    import importlib
    import inspect

    problems = []
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        tree = ast.parse(script.read_text(encoding="utf-8"))
        modules = {alias.asname or alias.name.rsplit(".", 1)[-1]: f"{node.module}.{alias.name}"
                   for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   and (node.module or "").startswith("bma_quant.pipelines")
                   for alias in node.names}
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "timed"):
                continue
            target = call.args[1] if len(call.args) > 1 else None
            if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                    and target.value.id in modules):
                continue
            function = getattr(importlib.import_module(modules[target.value.id]), target.attr)
            given = len(call.args) - 2
            try:
                inspect.signature(function).bind(*range(given),
                                                 **{k.arg: 0 for k in call.keywords if k.arg})
            except TypeError as error:
                problems.append(f"{script.name}: {target.attr}: {error}")
    assert not problems, problems
