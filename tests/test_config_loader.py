"""A conf file that is not valid YAML is named with its line and column as an editor counts
them (Kedro's message gave 0-based positions, and a key twice in one file named no file)."""

import pytest

from bma_quant.config_loader import ConfigFileError, ProjectConfigLoader


def _loader(tmp_path, local_text: str) -> ProjectConfigLoader:
    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("cv:\n  n_splits: 5\n")
    (tmp_path / "local" / "parameters.yml").write_text(local_text)
    return ProjectConfigLoader(conf_source=str(tmp_path), base_env="base",
                               default_run_env="local")


@pytest.mark.parametrize("text, message", [
    ("cv:\n  n_splits: 3\n  window: [expanding\n  max: 2\n",  # an unclosed bracket
     r"local/parameters.yml, line 4, column 6: did not find expected ',' or '\]' \(while "
     r"parsing a flow sequence from line 3, column 11\)"),
    ("cv:\n  n_splits: 3\n  n_splits: 4\n",  # a key twice in one file: Kedro named no file
     r"local/parameters.yml, line 3, column 3: found duplicate key n_splits \(while "
     r"constructing a mapping from line 2, column 3\)"),
], ids=["syntax", "duplicate_key"])
def test_an_invalid_file_is_named_with_its_line_and_column(tmp_path, text, message):
    with pytest.raises(ConfigFileError, match=message):
        _loader(tmp_path, text)["parameters"]


def test_valid_files_load_as_before(tmp_path):
    loader = _loader(tmp_path, "cv:\n  n_splits: 3\n")
    assert loader["parameters"]["cv"]["n_splits"] == 3


def test_the_error_ends_the_run_in_one_block():
    from bma_quant.run_hooks.user_errors import is_user_error

    assert is_user_error(ConfigFileError("conf/local/parameters.yml, line 4: ..."))


@pytest.mark.parametrize("local_text, runtime, message", [
    ("cv: [5]\n", None, r"cv is a mapping in the project's conf, and conf/local sets it to a "
                        r"list \(\[5\]\)"),
    ("cv:\n  n_splits: 3\n", {"cv": [5]}, r"cv is a mapping in the project's conf, and "
                                          r"--params sets it to a list"),
    ("", {"cv": {"n_splits": [1, 2]}, "lags": {"a": 1}},
     r"lags is a list in the project's conf, and --params sets it to a mapping"),
], ids=["conf_local", "params", "list_made_a_mapping"])
def test_a_mapping_set_to_a_list_is_named(tmp_path, local_text, runtime, message):
    """`cv: [5]` in conf/local or `--params "cv=[5]"` failed in OmegaConf's merge with a
    traceback naming neither the key nor the file."""
    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("cv:\n  n_splits: 5\nlags: [0, 1]\n")
    (tmp_path / "local" / "parameters.yml").write_text(local_text)
    loader = ProjectConfigLoader(conf_source=str(tmp_path), base_env="base",
                                 default_run_env="local", runtime_params=runtime,
                                 merge_strategy={"parameters": "soft"})  # as settings.py
    with pytest.raises(ConfigFileError, match=message):
        loader["parameters"]


def test_a_conf_file_no_pattern_reads_is_warned_about_once(tmp_path, caplog):
    """`conf/local/params.yml` (not `parameters*`) holding `periods.test_start` was ignored
    without a word; the run used the default split and replaced the outputs. The project's own
    conf (mlflow.yml, the per-pipeline files, the smoke environment) warns about nothing."""
    from pathlib import Path

    loader = _loader(tmp_path, "cv:\n  n_splits: 3\n")
    (tmp_path / "local" / "params.yml").write_text("periods:\n  test_start: 2020-01-01\n")
    (tmp_path / "local" / "notes.txt").write_text("not a conf file")
    (tmp_path / "local" / "parameters").mkdir()  # read by Kedro: parameters*/**
    (tmp_path / "local" / "parameters" / "extra.yml").write_text("extra_nested: 1\n")
    (tmp_path / "local" / "logging.yml").write_text("version: 1\n")
    with caplog.at_level("WARNING"):
        loader["parameters"]
        loader["parameters"]
    assert caplog.text.count("conf/local/params.yml is read by no one") == 1
    assert "notes.txt" not in caplog.text and "extra.yml" not in caplog.text
    assert "logging.yml" not in caplog.text
    caplog.clear()
    conf = Path(__file__).resolve().parents[1] / "conf"
    for env in ("local", "smoke"):
        with caplog.at_level("WARNING"):
            ProjectConfigLoader(conf_source=str(conf), base_env="base", default_run_env=env,
                                merge_strategy={"parameters": "soft"})["parameters"]
    assert "read by no one" not in caplog.text
