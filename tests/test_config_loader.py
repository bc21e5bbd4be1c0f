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


def test_a_syntax_error_is_named_with_its_file_line_and_column(tmp_path):
    loader = _loader(tmp_path, "cv:\n  n_splits: 3\n  window: [expanding\n  max: 2\n")
    with pytest.raises(ConfigFileError, match=r"local/parameters.yml, line 4, column 6: "
                                              r"did not find expected ',' or '\]' \(while "
                                              r"parsing a flow sequence from line 3, column 11\)"):
        loader["parameters"]


def test_a_key_twice_in_one_file_is_named_with_the_file(tmp_path):
    loader = _loader(tmp_path, "cv:\n  n_splits: 3\n  n_splits: 4\n")
    with pytest.raises(ConfigFileError, match=r"local/parameters.yml, line 3, column 3: "
                                              r"found duplicate key n_splits \(while constructing "
                                              r"a mapping from line 2, column 3\)"):
        loader["parameters"]


def test_valid_files_load_as_before(tmp_path):
    loader = _loader(tmp_path, "cv:\n  n_splits: 3\n")
    assert loader["parameters"]["cv"]["n_splits"] == 3


def test_the_error_ends_the_run_in_one_block():
    from bma_quant.run_hooks.user_errors import is_user_error

    assert is_user_error(ConfigFileError("conf/local/parameters.yml, line 4: ..."))
