"""`python -m bma_quant.tune_worker --params` reads values as `kedro run --params` does; a value
YAML cannot read ends with one line, not a traceback."""

import pytest

from bma_quant import tune_worker


def test_params_are_read_as_kedro_run_reads_them():
    assert tune_worker.parse_params("a.b=1,c=x,d.e='>='") == {"a": {"b": 1}, "c": "x",
                                                              "d": {"e": ">="}}


def test_a_value_yaml_cannot_read_ends_with_one_line(capsys):
    with pytest.raises(SystemExit) as ended:
        tune_worker.main(["--params", "evaluation.gates.checks.sharpe.op=>="])
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "could not be read as YAML: quote a value that starts with a YAML sign " \
           "(evaluation.gates.checks.sharpe.op='>=')" in err
    assert "Traceback" not in err
