"""Target portfolio weights: known answers for the quantile book, the cap, sectors, long-only."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.evaluation.portfolio import PortfolioRule, target_weights


def _scores(n=10, sectors=None):
    frame = pd.DataFrame({"ticker": [f"T{i:02d}" for i in range(n)],
                          "score": np.arange(n, dtype=float)})  # T09 best, T00 worst
    if sectors is not None:
        frame["sector"] = sectors
    return frame


def _weights(frame, **rule):
    out, summary = target_weights(frame, PortfolioRule(**rule))
    return out.set_index("ticker")["weight"], out.set_index("ticker")["quantile"], summary


def test_long_short_holds_the_top_and_bottom_quintile_equally():
    w, q, summary = _weights(_scores(), max_weight=0.5)
    assert w.to_dict() == pytest.approx({"T00": -0.25, "T01": -0.25, "T02": 0, "T03": 0,
                                         "T04": 0, "T05": 0, "T06": 0, "T07": 0,
                                         "T08": 0.25, "T09": 0.25})
    assert q["T09"] == 5 and q["T00"] == 1
    assert summary["gross"] == pytest.approx(1.0) and summary["net"] == pytest.approx(0.0)
    assert summary["shortfall"] == 0.0


def test_binding_cap_widens_the_side_to_the_next_best_names():
    # side budget 0.5 over the 2-name quintile would be 0.25 > cap 0.2: the 3 best names at 1/6
    w, _, summary = _weights(_scores(), max_weight=0.2)
    assert w[["T09", "T08", "T07"]].tolist() == pytest.approx([1 / 6] * 3)
    assert w[["T00", "T01", "T02"]].tolist() == pytest.approx([-1 / 6] * 3)
    assert (w[["T03", "T04", "T05", "T06"]] == 0).all()
    assert np.abs(w).max() <= 0.2 + 1e-12
    assert summary["gross"] == pytest.approx(1.0) and summary["net"] == pytest.approx(0.0)


def test_cap_too_tight_for_the_half_reports_the_shortfall():
    # 0.5 per side at cap 0.1 needs 5 names; quintiles 4-5 hold only 4: gross 0.8
    w, _, summary = _weights(_scores(), max_weight=0.1)
    assert w[w > 0].tolist() == pytest.approx([0.1] * 4)
    assert (w < 0).sum() == 4
    assert summary["gross"] == pytest.approx(0.8) and summary["shortfall"] == pytest.approx(0.2)


def test_long_only_puts_the_gross_on_the_top_quantile():
    w, _, summary = _weights(_scores(), style="long_only", max_weight=0.5, gross_exposure=1.0)
    assert w[["T08", "T09"]].tolist() == pytest.approx([0.5, 0.5])
    assert (w.drop(["T08", "T09"]) == 0).all()
    assert summary["net"] == pytest.approx(1.0) and summary["n_short"] == 0


def test_sector_neutral_sums_to_zero_per_sector():
    sectors = ["a"] * 6 + ["b"] * 4
    frame = _scores(sectors=sectors)
    frame["score"] = [5, 1, 3, 0, 4, 2, 7, 9, 6, 8]  # ranks within each sector differ from global
    out, summary = target_weights(frame, PortfolioRule(max_weight=0.5, n_quantiles=2))
    by_sector = out.groupby("sector")["weight"]
    assert by_sector.sum().abs().max() < 1e-12
    # budgets proportional to sector size: sector a 0.6 of the gross, b 0.4
    assert by_sector.apply(lambda s: s.abs().sum()).to_dict() == pytest.approx({"a": 0.6, "b": 0.4})
    a = out[out["sector"] == "a"].set_index("ticker")["weight"]
    assert a[["T00", "T02", "T04"]].tolist() == pytest.approx([0.1] * 3)  # top half of a
    assert summary["sector_neutral"] and summary["gross"] == pytest.approx(1.0)


def test_sectors_are_ignored_when_sector_neutral_is_off():
    frame = _scores(sectors=["a"] * 5 + ["b"] * 5)
    w, _, summary = _weights(frame, max_weight=0.5, sector_neutral=False)
    assert not summary["sector_neutral"]
    assert w[["T08", "T09"]].tolist() == pytest.approx([0.25, 0.25])
    assert w[["T00", "T01"]].tolist() == pytest.approx([-0.25, -0.25])


def test_names_without_a_score_get_no_weight():
    frame = _scores(11)
    frame.loc[frame["ticker"] == "T10", "score"] = np.nan
    w, q, _ = _weights(frame, max_weight=0.5)
    assert w["T10"] == 0 and pd.isna(q["T10"])
    assert w["T09"] == pytest.approx(0.25)


@pytest.mark.parametrize("rule, name", [
    ({"style": "market_neutral"}, "portfolio.style"),
    ({"n_quantiles": 1}, "portfolio.n_quantiles"),
    ({"gross_exposure": 0.0}, "portfolio.gross_exposure"),
    ({"max_weight": 0.0}, "portfolio.max_weight"),
])
def test_bad_rules_are_refused_by_name(rule, name):
    with pytest.raises(ValueError, match=name):
        PortfolioRule(**rule)


def test_a_cap_above_the_gross_exposure_binds_nothing():
    """max_weight 2 with gross 1 (was a traceback at inference): no weight can reach it, so
    the book is the uncapped one."""
    assert PortfolioRule(max_weight=2.0).max_weight == 1.0
    capped, _, _ = _weights(_scores(), max_weight=2.0)
    uncapped, _, _ = _weights(_scores())
    pd.testing.assert_series_equal(capped, uncapped)


def test_uneven_sides_are_trimmed_to_stay_net_zero():
    # tied best scores share the top half: 4 names long, 2 short; the short side holds only
    # 2 x 0.2 under the cap, so the long side is scaled to the same 0.4 (0.1 per name)
    frame = pd.DataFrame({"ticker": list("abcdef"), "score": [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]})
    w, q, summary = _weights(frame, n_quantiles=2, max_weight=0.2)
    assert w.to_dict() == pytest.approx({"a": -0.2, "b": -0.2, "c": 0.1, "d": 0.1, "e": 0.1,
                                         "f": 0.1})
    assert summary["net"] == pytest.approx(0.0) and summary["gross"] == pytest.approx(0.8)


def test_no_cap_by_default_gives_the_quantile_book():
    """max_weight null (the default): the cap is the gross exposure, so 20 names in quintiles
    hold 0.125 per name on each side, the book the evaluation backtest scores, not widened."""
    rule = PortfolioRule.from_params({"style": "long_short", "n_quantiles": 5,
                                      "gross_exposure": 1.0, "max_weight": None})
    assert rule.max_weight == 1.0
    frame = pd.DataFrame({"ticker": [f"T{i:02d}" for i in range(20)],
                          "score": np.linspace(1.0, -1.0, 20)})
    out, summary = target_weights(frame, rule)
    held = out.loc[out["weight"] != 0, "weight"]
    assert len(held) == 8 and np.allclose(held.abs(), 0.125) and summary["shortfall"] == 0
