"""Panel matrices -> long rows: only the cells a later step can use are built."""

import numpy as np
import pandas as pd

from bma_quant.core.data.panel import PanelMatrices, cells_with_values, to_long


def _matrices() -> PanelMatrices:
    dates = pd.bdate_range("2020-01-01", periods=5, name="date")
    tickers = pd.Index(["A", "B", "C"], name="ticker")
    close = pd.DataFrame([[1.0, 2.0, np.nan],
                          [1.1, np.nan, np.nan],   # B halted, C not listed yet
                          [np.nan, np.nan, np.nan],  # a date on which nobody has a value
                          [1.2, np.nan, 3.0],      # B delisted
                          [1.3, np.nan, 3.1]], index=dates, columns=tickers)
    volume = close * 100
    volume.iloc[1, 1] = 50.0  # B has a volume but no close on its halted day
    sector = pd.DataFrame("tech", index=dates, columns=tickers)
    eligible = close.notna()
    return PanelMatrices({"close": close, "volume": volume}, sector, [], eligible)


def test_cells_with_values_keep_listed_cells_that_carry_something():
    panel = _matrices()
    listed = panel.close.notna().cummax().to_numpy()
    cells = cells_with_values(panel, listed)
    expected = np.array([[True, True, False],
                         [True, True, False],    # B's volume alone keeps its row
                         [True, True, False],    # an empty date keeps its listed cells
                         [True, False, True],
                         [True, False, True]])
    np.testing.assert_array_equal(cells, expected)


def test_to_long_on_cells_equals_the_full_grid_filtered():
    panel = _matrices()
    extra = {"ret_1d": panel.close / panel.close.shift(1) - 1}
    full = to_long(panel, extra)
    assert len(full) == 15 and list(full.columns) == [
        "date", "ticker", "close", "volume", "ret_1d", "sector", "eligible"]
    cells = cells_with_values(panel, panel.close.notna().cummax().to_numpy())
    part = to_long(panel, extra, cells=cells)
    expected = full[cells.ravel()].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)
    assert part.groupby("date").size().tolist() == [2, 2, 2, 2, 2]
