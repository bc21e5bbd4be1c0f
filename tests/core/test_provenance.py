"""What stored data_processing outputs were built from: data files and parameter values."""

import os

from bma_quant.core.data import provenance


def test_a_file_changed_in_place_is_told_even_at_the_same_size(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("date,ticker,close\n2020-01-02,A,10.0\n")
    recorded = provenance.file_fingerprint(path)
    assert recorded["bytes"] == path.stat().st_size and len(recorded["sha256"]) == 64
    assert provenance.same_file_content(recorded, path)
    path.write_text("date,ticker,close\n2020-01-02,A,11.0\n")  # same size, other content
    os.utime(path, ns=(recorded["modified_ns"] + 10**9,) * 2)  # a coarse clock must not hide it
    assert not provenance.same_file_content(recorded, path)
    # same size and modification time: taken as unchanged without reading the file (as make
    # and rsync do), so a multi-GB file is not hashed again on every layer run
    os.utime(path, ns=(recorded["modified_ns"],) * 2)
    assert provenance.same_file_content(recorded, path)
    path.write_text("date,ticker,close\n2020-01-02,A,10.0\n2020-01-03,A,10.5\n")  # appended
    assert not provenance.same_file_content(recorded, path)


def test_nothing_recorded_or_no_file_is_not_a_change(tmp_path):
    assert provenance.file_fingerprint(None) is None
    assert provenance.file_fingerprint(tmp_path / "missing.csv") is None
    assert provenance.same_file_content(None, tmp_path / "missing.csv")
    assert provenance.same_file_content({"bytes": 3, "sha256": "x"}, tmp_path / "missing.csv")


def test_settings_leave_out_paths_and_evaluation_only_cv_keys():
    params = {
        "data": {"raw_path": "a.csv", "index_path": "i.csv", "true_regimes_path": None,
                 "layout": "auto", "decimal": "."},
        "cv": {"n_splits": 5, "scheme": "walk_forward", "combinatorial": {"n_groups": 6}},
        "periods": {"test_fraction": 0.2, "test_start": None},
        "temporal": {"prediction_horizon_days": 10},
        "processing": {"coverage_threshold": 0.7},
        "stacking": {"anything": 1},
    }
    settings = provenance.panel_settings(params)
    assert settings == {"data": {"decimal": ".", "layout": "auto"}, "cv": {"n_splits": 5},
                        "periods": {"test_fraction": 0.2, "test_start": None},
                        "temporal": {"prediction_horizon_days": 10},
                        "processing": {"coverage_threshold": 0.7}}


def test_changed_settings_name_each_key_with_both_values():
    stored = {"periods": {"test_fraction": 0.2, "test_start": None},
              "cv": {"n_splits": 5, "short_panel": {"floor": {"min_test_days": 21}}}}
    current = {"periods": {"test_fraction": 0.3, "test_start": None},
               "cv": {"n_splits": 5, "short_panel": {"floor": {"min_test_days": 21}},
                      "window": "expanding"}}
    assert provenance.changed_settings(stored, stored) == []
    assert provenance.changed_settings(stored, current) == [
        "cv.window: <unset> -> expanding", "periods.test_fraction: 0.2 -> 0.3"]


def test_settings_survive_the_json_report_unchanged():
    """Recorded in a JSON report and read back, the same parameters show no change (dates and
    other non-JSON values are compared as text)."""
    import datetime
    import json

    params = {"periods": {"test_start": datetime.date(2019, 1, 2), "test_fraction": None}}
    stored = json.loads(json.dumps(provenance.panel_settings(params)))
    assert provenance.changed_settings(stored, provenance.panel_settings(params)) == []


def _report(path_text, fingerprint, settings):
    return {"source": {"raw_path": path_text, "raw_file": fingerprint, "index_path": None,
                       "index_file": None, "true_regimes_path": "t.parquet",
                       "true_regimes_file": {"bytes": 1, "sha256": "c" * 64}},
            "settings": settings}


def test_a_build_is_its_files_content_and_settings_not_how_the_path_is_written():
    file = {"bytes": 10, "sha256": "ab" * 32}
    settings = {"periods": {"test_fraction": 0.2}}

    def build(path_text, fingerprint, settings):
        return provenance.build_id(provenance.build_record(_report(path_text, fingerprint,
                                                                   settings)))

    first = build("data/01_raw/x.csv", file, settings)
    assert len(first) == 16
    assert build("/abs/project/data/01_raw/x.csv", file, settings) == first
    assert build("data/01_raw/x.csv", {**file, "bytes": 11}, settings) != first
    assert build("data/01_raw/x.csv", file, {"periods": {"test_fraction": 0.3}}) != first
    other_truth = _report("data/01_raw/x.csv", file, settings)
    other_truth["source"]["true_regimes_path"] = None  # scored against only: the same build
    assert provenance.build_id(provenance.build_record(other_truth)) == first
    assert provenance.build_record({"source": {"raw_path": "x.csv"}}) is None  # older report


def test_differences_between_builds_name_files_and_settings():
    old = provenance.build_record(_report("x.csv", {"bytes": 1, "sha256": "a"},
                                          {"periods": {"test_fraction": 0.25,
                                                       "dev_start": None}}))
    new = provenance.build_record(_report("x.csv", {"bytes": 2, "sha256": "b"},
                                          {"periods": {"test_fraction": 0.3,
                                                       "dev_start": "1995-01-03"}}))
    assert provenance.build_differences(old, new) == [
        "data.raw_path: another file", "periods.dev_start: null -> 1995-01-03",
        "periods.test_fraction: 0.25 -> 0.3"]
