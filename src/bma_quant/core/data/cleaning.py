"""Repairs of real-data defects that are not errors (DESIGN §2), each causal and each counted.

- missing days: forward fill within a ticker up to a limit, never backward;
- suspected unadjusted splits: a one-day move whose price ratio sits near a split ratio (2, 3,
  3/2, ...) and whose new level holds for a few closes is a split; the name's prices are withheld
  while that is undecided and scaled back from the confirming date on (forward adjustment: every
  value depends on closes up to its own date, prefix invariant);
- stale prices: zero-return streaks are counted; days beyond `mask_after` of a streak are masked;
- imputation of optional numeric columns by that date's cross-sectional median (data at t only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import pandas as pd

from bma_quant.core.data import listings, price_grid
from bma_quant.core.data.move_labels import move_label
from bma_quant.core.data.panel import PanelMatrices

PRICE_FIELDS = ("open", "high", "low", "close")


def forward_fill_limited(panel: PanelMatrices, limit: int,
                         column_limits: Mapping[str, int] | None = None,
                         zero_carried_volume: bool = False) -> tuple[PanelMatrices, int]:
    """Forward fill every column within each ticker for at most `limit` consecutive missing days
    (`column_limits` overrides it per column: a monthly user factor keeps its last published
    value for the month). Cells before a ticker's first observation stay missing (no backward
    fill). With `zero_carried_volume`, a day whose close is carried has volume 0, not the last
    day's: nothing traded that the file knows of, as in a halt exported as volume-0 rows (volume
    windows then read the same either way). Returns the panel and the number of closes filled."""
    before = int(panel.close.isna().to_numpy().sum())
    limits = {name: int((column_limits or {}).get(name, limit)) for name in panel.values}
    values = {name: m.ffill(limit=limits[name]) if limits[name] > 0 else m
              for name, m in panel.values.items()}
    if zero_carried_volume and "volume" in values:
        carried = panel.close.isna() & values["close"].notna()
        values["volume"] = values["volume"].mask(carried, 0.0)
    out = PanelMatrices(values, panel.sector, panel.extra_columns)
    filled = before - int(out.close.isna().to_numpy().sum())
    return out, filled


def factor_fill_limits(user_columns, factor_ffill_limit) -> dict[str, int] | None:
    """Per-column forward-fill limits of the user factor columns: one limit for all, or a
    mapping {column: limit} (a monthly and a quarterly factor each keep their value for their
    period; columns it does not name keep the panel's limit). None: the panel's limit."""
    if factor_ffill_limit is None:
        return None
    if isinstance(factor_ffill_limit, Mapping):
        return {name: int(factor_ffill_limit[name]) for name in user_columns
                if factor_ffill_limit.get(name) is not None}
    return {name: int(factor_ffill_limit) for name in user_columns}


@dataclass(frozen=True)
class SplitEvent:
    date: str
    ticker: str
    ratio: float  # pre-split price / post-split price, e.g. 2.0 for a 2:1 split
    # "repaired": held through confirm_days closes, prices rescaled from the confirming date on;
    # "pending": the panel ends before confirm_days closes could confirm it (nothing rescaled);
    # "way back": the move back from an earlier one that did not hold (nothing rescaled);
    # "market move": the day's median name moved with it (nothing rescaled)
    status: str = "repaired"


@dataclass(frozen=True)
class SplitRepair:
    panel: PanelMatrices
    events: list[SplitEvent]  # repaired and pending suspected splits
    withheld_cells: int  # prices withheld while a near-ratio move awaited its confirmation
    withheld: pd.DataFrame | None = None  # those cells (date x ticker bool); None = none


def repair_unadjusted_splits(
    panel: PanelMatrices, max_abs_return: float, ratios: list[float], tolerance: float,
    confirm_days: int, unit_tolerance: float | None = None, max_gap_days: int | None = None,
    observed: pd.DataFrame | None = None,
) -> tuple[PanelMatrices, list[SplitEvent]]:
    """Detect and forward-adjust suspected unadjusted splits (and reverse splits), causally.

    A one-day move close(t-1) -> close(t) near a split ratio is a candidate. It is a split only if
    the next `confirm_days` closes hold the new level (see `_holds_new_level`; a genuine -50 %
    day that rebounds is a real return). That is known on the `confirm_days`-th date after t, not
    before, so every value of the cleaned panel depends on closes up to its own date only (prefix
    invariant, DESIGN §3):
    - while a candidate awaits its confirmation (from t until the date its level breaks or it is
      confirmed, the panel's end at the latest), the name's prices and volume are withheld (NaN):
      at t nobody can tell a split from a crash;
    - once confirmed, prices from the confirming date on are multiplied by the ratio (volume
      divided); every date before t keeps its values.

    `unit_tolerance`: the tolerance for prices jumping x100 (a quote switching from units to
    cents), wider than `tolerance` because that day's own move rides on it (x100 on a -4 % day
    is x96) and no genuine one-day move comes near x100; a /100 move keeps `tolerance` (a real
    -99 % crash looks like it); None = `tolerance` for every ratio.

    `max_gap_days`: a move is measured from the last close at most this many dates earlier
    (None: any): a code that returns after a long absence is often another company.

    Moves beyond `max_abs_return` are checked, and also smaller ones near a configured ratio
    whose split moves the price less (1.5: a 3:2 split is -33 %)."""
    result = split_repair(panel, max_abs_return, ratios, tolerance, confirm_days,
                          unit_tolerance, max_gap_days, observed)
    return result.panel, [e for e in result.events if e.status != "way back"]


def split_repair(
    panel: PanelMatrices, max_abs_return: float, ratios: list[float], tolerance: float,
    confirm_days: int, unit_tolerance: float | None = None, max_gap_days: int | None = None,
    observed: pd.DataFrame | None = None, open_evidence: bool = False,
    market_min_names: int | None = None, market_min_share: float = 0.5,
) -> SplitRepair:
    """`repair_unadjusted_splits` with the withheld cells (the data-quality report, and the
    daily returns that span them). `observed`: the closes the file gave, before the forward
    fill: only they confirm or break a new level (a carried copy of the last close is no
    evidence that a price held); None = the panel's closes. `open_evidence`: read the move
    day's open too (`_open_evidence`): a split happens overnight, so the open is already at the
    new level; a move whose open sat at the old level happened in the session (a crash or a
    jump, not repaired), and a close outside `tolerance` with an open inside it is a split on a
    day the stock also moved. `market_min_names`, `market_min_share`: see `market_moves` and
    `_market_explains` (None: off)."""
    close = panel.close
    closes = (close if observed is None else observed.reindex_like(close)).to_numpy(dtype=float)
    opens = (panel.values["open"].reindex_like(close).to_numpy(dtype=float)
             if open_evidence and "open" in panel.values else None)
    factor = np.ones(close.shape)
    withheld = np.zeros(close.shape, dtype=bool)
    events: list[SplitEvent] = []
    bound = _candidate_bound(max_abs_return, ratios, tolerance)
    # column -> (row where moves broke, [(their ratio, the level they left)]): a move on that
    # row back to one of those levels undoes them
    undoing: dict[int, tuple[int, list[tuple[float, float]]]] = {}
    # the way back from a jump that did not hold (a bad print): never a split, near a ratio or not
    way_back = {(m.back_row, m.column) for m in reverted_large_moves(
        close, max_abs_return, confirm_days, max_gap_days)}
    moves = _large_moves(close, bound, ratios, max_gap_days)
    market = market_moves(close, moves, max_gap_days, market_min_names)
    for move in moves:  # in date order
        # prices x100 (a +9,900 % day is never real); /100 keeps the tight tolerance, since a
        # -99 % crash that stays down is a real (bankruptcy) move
        allowed = (unit_tolerance if unit_tolerance is not None and 1.0 / move.nearest >= 100
                   else tolerance)
        i, j = move.row, move.column
        left = move.previous
        opened = (None if opens is None else
                  _open_evidence(opens[i, j], left, close.iat[i, j], move.nearest, allowed))
        if opened == "old" and move.off_ratio <= allowed:
            # near a ratio, but the open was at the old level: it moved in the session
            events.append(SplitEvent(str(close.index[i].date()), str(close.columns[j]),
                                     float(move.nearest), "in session"))
            continue
        if opened == "old" or (move.off_ratio > allowed and opened != "new"):
            continue
        if _market_explains(move, market.get((i, j)), allowed, market_min_share):
            events.append(SplitEvent(str(close.index[i].date()), str(close.columns[j]),
                                     float(move.nearest), "market move"))
            continue
        back = undoing.get(j)
        if (i, j) in way_back or back is not None and back[0] == i and any(
                np.isclose(ratio * move.nearest, 1.0) or abs(close.iat[i, j] / left - 1) <= allowed
                for ratio, left in back[1]):
            # the way back from a move that did not hold (a few bad prints): no split, and no
            # near-split move to report either
            events.append(SplitEvent(str(close.index[i].date()), str(close.columns[j]),
                                     float(move.nearest), "way back"))
            continue
        decided = _confirmation_row(closes[:, j], i, int(confirm_days), left=left,
                                    level=close.iat[i, j])
        if not (decided.held or decided.pending):
            earlier = undoing[j][1] if j in undoing and undoing[j][0] == decided.row else []
            undoing[j] = (decided.row, [*earlier, (move.nearest, left)])
        withheld[i:decided.row, j] = True
        if decided.held:
            factor[decided.row:, j] *= move.nearest
        if decided.held or decided.pending:
            events.append(SplitEvent(str(close.index[i].date()), str(close.columns[j]),
                                     float(move.nearest),
                                     "pending" if decided.pending else "repaired"))
    if not withheld.any() and not any(e.status == "repaired" for e in events):
        return SplitRepair(panel, events, 0)
    values = dict(panel.values)
    for name in PRICE_FIELDS:
        if name in values:
            values[name] = (values[name] * factor).mask(withheld)
    if "volume" in values:
        values["volume"] = (values["volume"] / factor).mask(withheld)
    return SplitRepair(PanelMatrices(values, panel.sector, panel.extra_columns), events,
                       int(withheld.sum()),
                       pd.DataFrame(withheld, index=close.index, columns=close.columns))


@dataclass(frozen=True)
class RevertedMove:
    row: int  # the jump
    back_row: int  # the move back
    column: int
    change: float  # the jump: close(row) / close before it - 1


def reverted_large_moves(close: pd.DataFrame, max_abs_return: float, confirm_days: int,
                         max_gap_days: int | None = None) -> list[RevertedMove]:
    """One-day moves beyond `max_abs_return` that a later move, within `confirm_days` rows,
    takes back to within `max_abs_return` of the close before them (a bad print such as a
    price x1000 for a day). Found at the move back, from closes up to it: causal."""
    out, last = [], {}  # column -> (row, close before) of its latest large move
    for move in _large_moves(close, max_abs_return, [2.0], max_gap_days):  # in date order
        i, j = move.row, move.column
        before = move.previous  # the close it moved from (a -100 % move divides by 0)
        earlier = last.pop(j, None)
        if (earlier is not None and i - earlier[0] <= confirm_days
                and abs(close.iat[i, j] / earlier[1] - 1.0) <= max_abs_return):
            out.append(RevertedMove(earlier[0], i, j, earlier[2]))
            continue
        last[j] = (i, before, move.change)
    return sorted(out, key=lambda m: (m.row, m.column))


def reverted_move_report(close: pd.DataFrame, max_abs_return: float, confirm_days: int,
                         max_gap_days: int | None = None) -> list[dict]:
    """`reverted_large_moves` for the data-quality report: ticker, the jump's date and size,
    the date of the move back."""
    return [{"date": str(close.index[m.row].date()), "ticker": str(close.columns[m.column]),
             "change": round(m.change, 4), "back": str(close.index[m.back_row].date())}
            for m in reverted_large_moves(close, max_abs_return, confirm_days, max_gap_days)]


@dataclass(frozen=True)
class LargeMove:
    row: int
    column: int
    change: float  # close(t) / close(t-1) - 1
    nearest: float  # the split ratio (pre / post) nearest to the move
    off_ratio: float  # relative distance of the move's implied ratio from it
    previous: float = np.nan  # the close it moved from


def market_moves(close: pd.DataFrame, moves: list[LargeMove], max_gap_days: int | None,
                 min_names: int | None) -> dict[tuple[int, int], float]:
    """For each candidate move, the median one-day move of the other names that day (measured
    as the candidate is), when at least `min_names` of them moved (None: off). A split is one
    company's event: a market-wide crash (a war, a devaluation: many names -30 to -55 % in one
    session) puts some names within a split ratio's tolerance by chance."""
    if not min_names or not moves:
        return {}
    one_day = (close / _last_close_within(close, max_gap_days)).to_numpy(dtype=float)
    out = {}
    for move in moves:
        row = np.delete(one_day[move.row], move.column)
        row = row[np.isfinite(row)]
        if len(row) >= int(min_names):
            out[(move.row, move.column)] = float(np.median(row)) - 1.0
    return out


def _market_explains(move: LargeMove, market: float | None, tolerance: float,
                     min_share: float) -> bool:
    """The day's median name moved the same way as the candidate, at least `min_share` of the
    split's move (in logs: a 2:1 split is -69 %, so half is a -29 % market day, which no
    ordinary split day has), and the name's move relative to it is off the nearest split ratio
    by more than `tolerance`: the market's move, not a split. A split on a -3 % market day is
    never questioned (its idiosyncratic move can put it 2 % off relative to the market). Units
    switching (x100, /100) are never a market's move."""
    if market is None or not 0.01 < move.nearest < 100.0 or market <= -1.0:
        return False
    split_log, market_log = -np.log(move.nearest), np.log1p(market)
    if market_log * split_log <= 0 or abs(market_log) < min_share * abs(split_log):
        return False
    relative = (1.0 + move.change) / (1.0 + market)
    return relative > 0 and abs(1.0 / relative / move.nearest - 1.0) > tolerance


def _open_evidence(open_: float, left: float, close: float, ratio: float, tolerance: float
                   ) -> str | None:
    """What the move day's open says of a candidate split from `left` (the last close) by
    `ratio` (pre / post): "old" when it sits nearer the old level than the new one (in log
    terms: the price moved during the session), "new" when it is within `tolerance` of the
    split level, None when it is missing or says nothing (equal to the last close or to the
    day's close: a vendor's fill for a missing open)."""
    if not (np.isfinite(open_) and open_ > 0) or open_ == left or open_ == close:
        return None
    split_level = left / ratio
    if abs(np.log(open_ / left)) < abs(np.log(open_ / split_level)):
        return "old"
    return "new" if abs(split_level / open_ - 1.0) <= tolerance else None


@dataclass(frozen=True)
class Confirmation:
    row: int  # first row no longer withheld: the confirming or breaking date, or the panel's end
    held: bool  # the level held through confirm_days closes: a split
    pending: bool  # the panel ended first: undecided


def _confirmation_row(closes: np.ndarray, row: int, confirm_days: int, left: float,
                      level: float | None = None) -> Confirmation:
    """Walk the closes after a candidate move at `row` away from the level `left`: the first
    close that does not hold the new level decides "no split" on its date; `confirm_days` closes
    holding it decide "split" on the last one. Missing closes neither confirm nor break, but
    `confirm_days` of them in a row decide "no split" on the last: the name stopped trading
    (a crash before a delisting, not a split: a day or two at the new level before it stops is
    no evidence). The panel's end first: pending. `level`: the move's new close (default:
    `closes[row]`)."""
    level = closes[row] if level is None else level
    if confirm_days <= 0:
        return Confirmation(row, held=True, pending=False)
    seen = silent = 0
    for k in range(row + 1, len(closes)):
        if not np.isfinite(closes[k]):
            silent += 1
            if silent >= confirm_days:
                return Confirmation(k, held=False, pending=False)
            continue
        seen, silent = seen + 1, 0
        if not _holds_new_level(left, level, closes[k:k + 1]):
            return Confirmation(k, held=False, pending=False)
        if seen >= confirm_days:
            return Confirmation(k, held=True, pending=False)
    return Confirmation(len(closes), held=False, pending=True)


def _candidate_bound(max_abs_return: float, ratios: list[float], tolerance: float) -> float:
    """The size beyond which one-day moves are checked: `max_abs_return`, lowered to the smallest
    move a configured ratio makes within `tolerance` (1.5, a 3:2 split: about -0.33)."""
    smallest = min((min(1.0 - 1.0 / (r * (1.0 - tolerance)),
                        r * (1.0 - tolerance) - 1.0 if r >= 2.0 else np.inf)
                    for r in map(float, ratios) if r > 1.0), default=max_abs_return)
    return float(min(max_abs_return, smallest))


def _last_close_within(close: pd.DataFrame, max_gap_days: int | None) -> pd.DataFrame:
    """At each date, the name's last close on an earlier date at most `max_gap_days` dates back
    (None: any), NaN when there is none."""
    if max_gap_days is None:
        return close.ffill().shift(1)
    gap = max(int(max_gap_days), 1)
    return (close.ffill(limit=gap - 1) if gap > 1 else close).shift(1)


def split_ratios(ratios: list[float]) -> np.ndarray:
    """Pre / post price ratios a split can make: each configured ratio (2: a 2:1 split halves
    the price) and, for ratios of 2 and more, its reverse split (1:2 doubles it). 1.5 stays one
    way: a 3:2 split is common, a 2:3 reverse split is not, and a +50 % day is usually news."""
    return np.asarray(sorted({float(r) for r in ratios}
                             | {1.0 / float(r) for r in ratios if float(r) >= 2.0}))


def _large_moves(close: pd.DataFrame, bound: float, ratios: list[float],
                 max_gap_days: int | None = None) -> list[LargeMove]:
    """One-day moves beyond `bound`, with the split ratio nearest to each; a move is measured
    from the last close at most `max_gap_days` dates earlier (None: any)."""
    previous = _last_close_within(close, max_gap_days)
    move = close / previous
    candidates = split_ratios(ratios)
    big = (np.abs(move - 1.0) > bound).to_numpy() & move.notna().to_numpy()
    moved = np.flatnonzero(big.any(axis=0))  # the grid of the names with such moves only
    if moved.size:
        big[:, moved] &= ~_one_tick(close.to_numpy(dtype=float)[:, moved],
                                    previous.to_numpy(dtype=float)[:, moved])
    out = []
    for i, j in zip(*np.nonzero(big), strict=True):
        observed = float(move.iat[i, j])
        before = float(previous.iat[i, j])
        if not observed > 0:  # a close so small the ratio underflows (a vendor's 5e-324)
            out.append(LargeMove(int(i), int(j), -1.0, float(candidates.max()), np.inf, before))
            continue
        implied = 1.0 / observed  # pre/post ratio
        nearest = float(candidates[np.argmin(np.abs(np.log(candidates / implied)))])
        out.append(LargeMove(int(i), int(j), observed - 1.0, nearest,
                             abs(implied / nearest - 1.0), before))
    return out


def _one_tick(close: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(date x name) a move of at most one tick of the name's price grid (`price_grid`): a
    price of a few ticks (0.001 -> 0.002 on a 0.001 grid) makes ratios like 2:1 or 3:2 in one
    tick, the smallest move it can make, so a one-tick move says nothing of a split (a penny
    stock's tick noise was rescaled as 2:1 splits and reported as 3:2 ones). Names without a
    grid (computed prices) have no such moves. The grid is read from the closes seen so far,
    however few (a new name's first weeks move by ticks too)."""
    step = price_grid.price_steps(close, min_closes=1)
    with np.errstate(invalid="ignore"):
        return (step > 0) & (np.abs(close - previous) <= step * (1.0 + 1e-6))


def _held_large_moves(close: pd.DataFrame, bound: float, ratios: list[float],
                      confirm_days: int, max_gap_days: int | None = None,
                      observed: pd.DataFrame | None = None) -> list[LargeMove]:
    """One-day moves beyond `bound` that the next `confirm_days` closes hold (a crash
    that rebounds is no candidate; with no close after the move, nothing held), with the split
    ratio nearest to each (the report of near-split moves; it reads the file's closes, after the
    fact). `observed`: the closes the file gave (the fill's copies confirm nothing)."""
    closes = close.to_numpy(dtype=float)
    given = closes if observed is None else observed.reindex_like(close).to_numpy(dtype=float)
    held = []
    for move in _large_moves(close, bound, ratios, max_gap_days):
        i, j = move.row, move.column
        after = given[i + 1 : i + 1 + int(confirm_days), j]
        after = after[np.isfinite(after)]
        if (len(after) or not confirm_days) and _holds_new_level(
                move.previous, closes[i, j], after):
            held.append(move)
    return held


def split_like_moves(panel: PanelMatrices, max_abs_return: float, ratios: list[float],
                     report_tolerance: float, confirm_days: int,
                     repaired: list[SplitEvent] = (), max_gap_days: int | None = None,
                     observed: pd.DataFrame | None = None) -> list[dict]:
    """Held one-day moves within `report_tolerance` of a split ratio that the repair left (they
    were outside its `tolerance`): an unadjusted split on a day the stock also moved looks like
    this (x10 on a +3 % day is x9.7), and so does a real crash that stays down. Reported, not
    repaired: only the user can tell. `panel` is the one the repair read (the moves reported
    are the file's), `repaired` the repair's events (not reported again)."""
    # a move back to the level of two closes before undoes a one-day bad print: no split
    back = (panel.close / _last_close_within(panel.close, max_gap_days).shift(1)
            ).to_numpy(dtype=float)
    done = {(e.date, e.ticker) for e in repaired}
    moves = [{"date": str(panel.close.index[m.row].date()),
              "ticker": str(panel.close.columns[m.column]), "change": round(m.change, 4),
              "nearest_ratio": round(m.nearest, 6)}
             for m in _held_large_moves(panel.close,
                                        _candidate_bound(max_abs_return, ratios, report_tolerance),
                                        ratios, confirm_days, max_gap_days, observed)
             if m.off_ratio <= report_tolerance
             and not abs(back[m.row, m.column] - 1.0) <= max_abs_return]
    return [m for m in moves if (m["date"], m["ticker"]) not in done]


def unexplained_large_moves(panel: PanelMatrices, max_abs_return: float, ratios: list[float],
                            near_tolerance: float, confirm_days: int,
                            repaired: list[SplitEvent] = (), max_gap_days: int | None = None,
                            observed: pd.DataFrame | None = None) -> list[dict]:
    """Held one-day moves beyond `max_abs_return` that are near no configured split ratio (not
    within `near_tolerance`), were not repaired and were not undone the next day: a real crash
    that stays down, or an unadjusted split at a ratio the configuration does not list (7:1,
    20:1). Reported with the whole ratio they are near, if any (`integer_ratio`, e.g. 7 for a
    -86 % day); only the user can tell."""
    back = (panel.close / _last_close_within(panel.close, max_gap_days).shift(1)
            ).to_numpy(dtype=float)
    done = {(e.date, e.ticker) for e in repaired}
    out = []
    for m in _held_large_moves(panel.close, max_abs_return, ratios, confirm_days, max_gap_days,
                               observed):
        date, ticker = str(panel.close.index[m.row].date()), str(panel.close.columns[m.column])
        if (m.off_ratio <= near_tolerance or abs(back[m.row, m.column] - 1.0) <= max_abs_return
                or (date, ticker) in done):
            continue
        out.append({"date": date, "ticker": ticker, "change": round(m.change, 4),
                    "integer_ratio": _near_whole_ratio(m.change, near_tolerance)})
    return out


def _near_whole_ratio(change: float, near_tolerance: float) -> int | None:
    """The whole split ratio (2 or more) a held move is within `near_tolerance` of, or None; a
    move to a price thousands of times smaller or larger (a vendor's 1e-300) is near none."""
    post = 1.0 + change
    if not 1e-6 < post < 1e6:
        return None
    implied = 1.0 / post  # pre / post, as off_ratio measures it
    whole = round(max(implied, 1.0 / implied))  # a reverse split multiplies the price
    candidate = whole if implied >= 1.0 else 1.0 / max(whole, 1)
    return int(whole) if whole >= 2 and abs(implied / candidate - 1.0) <= near_tolerance else None


def unconfigured_ratio_moves(panel: PanelMatrices, max_abs_return: float, ratios: list[float],
                             tolerance: float, confirm_days: int, configured: list[float],
                             repaired: list[SplitEvent] = (), max_gap_days: int | None = None,
                             observed: pd.DataFrame | None = None,
                             open_evidence: bool = False) -> list[dict]:
    """Held one-day moves within `tolerance` of a common split ratio the configuration does not
    list (`ratios` less `configured`; 1.5: a 3:2 split is a -33.3 % day, inside the usual
    `max_abs_return`, so nothing else looks at it). Reported, not repaired: the user adds the
    ratio if they are splits. With `open_evidence` and opens, a move whose open sat at the old
    level happened in the session (a crash): not reported."""
    extra = [float(r) for r in ratios
             if float(r) > 1.0 and float(r) not in {float(c) for c in configured}]
    if not extra:
        return []
    # a move back to within half such a move of the close two days before undoes a bad print
    # (split_like_moves' `max_abs_return` test, which is wider than a 3:2 split's move)
    undone = min(float(max_abs_return), (1.0 - 1.0 / min(extra)) / 2.0)
    moves = split_like_moves(panel, undone, extra, tolerance, confirm_days, repaired,
                             max_gap_days, observed)
    opens = panel.values.get("open") if open_evidence else None
    if opens is None:
        return moves

    last = _last_close_within(panel.close, max_gap_days)  # the close the move is measured from

    def in_session(m: dict) -> bool:
        day, ticker = pd.Timestamp(m["date"]), m["ticker"]
        close = float(panel.close.at[day, ticker])
        open_ = float(opens.at[day, ticker])
        # the exact last close (the report's change is rounded): an open copied from it is a
        # vendor's fill and says nothing
        return _open_evidence(open_, float(last.at[day, ticker]), close, m["nearest_ratio"],
                              tolerance) == "old"

    return [m for m in moves if not in_session(m)]


def split_warnings(repaired: list[dict], pending: list[dict], near: list[dict],
                   unexplained: list[dict] = (), in_session: list[dict] = (),
                   unconfigured: list[dict] = (), market: list[dict] = ()) -> list[str]:
    """The warnings a run gives about splits (data_processing on the training file, inference
    on the scoring slice): repaired suspected splits, moves still awaiting confirmation at the
    data's end (no score for those names yet), and held near-ratio moves left alone."""
    out = []
    # a market without splits (crypto, a file of adjusted prices) should not have its real crashes
    # near a ratio rescaled, nor widen the tolerance for them
    no_splits = ("; on a market without splits (crypto, or adjusted prices) set "
                 "processing.split_detection.enabled: false")
    if repaired:
        out.append(f"repaired {len(repaired)} suspected unadjusted split(s): "
                   + ", ".join(f"{e['ticker']}@{e['date']} ({split_label(e['ratio'])})"
                               for e in repaired[:5])
                   + ": a real crash or jump that held near a ratio is rescaled too" + no_splits)
    if in_session:
        out.append(
            f"{len(in_session)} one-day move(s) near a split ratio were not repaired: the day's "
            "open was still at the old level, so the price moved during the session (a crash or "
            "a jump; a split happens overnight): "
            + ", ".join(f"{e['ticker']}@{e['date']} {split_label(e['ratio'])}?"
                        for e in in_session[:5])
            + (f" and {len(in_session) - 5} more" if len(in_session) > 5 else "")
            + "; if the file's opens are not the day's first trade, set "
            "processing.split_detection.open_evidence: false")
    if market:
        dates = sorted({e["date"] for e in market})
        out.append(
            f"{len(market)} one-day move(s) near a split ratio were not repaired: the day's "
            "median name moved with them (a market-wide move; a split is one company's), on "
            + ", ".join(dates[:5]) + (f" and {len(dates) - 5} more date(s)" if len(dates) > 5
                                      else "")
            + ": " + ", ".join(f"{e['ticker']}@{e['date']} {split_label(e['ratio'])}?"
                               for e in market[:5])
            + (f" and {len(market) - 5} more" if len(market) > 5 else "")
            + "; processing.split_detection.market_min_names: null turns this check off")
    if pending:
        out.append(
            f"{len(pending)} name(s) moved near a split ratio within the data's last "
            "processing.split_detection.confirm_days dates ("
            + ", ".join(f"{e['ticker']}@{e['date']} {split_label(e['ratio'])}?"
                        for e in pending[:5])
            + "): split or crash cannot be told yet, so their prices from that date on are left "
            "out (no features, no score) until enough closes follow")
    if near:
        out.append(
            f"{len(near)} one-day move(s) near a split ratio that held for processing."
            "split_detection.confirm_days were not repaired (further than its tolerance; the "
            "largest first): "
            + _largest(near, lambda m: f"{m['ticker']}@{m['date']} {move_label(m['change'])} "
                                       f"({split_label(m['nearest_ratio'])}?)")
            + ". An unadjusted split on a day the stock also moved, or a real crash? Adjust the "
            "file, or widen processing.split_detection.tolerance" + no_splits)
    if unconfigured:
        ratios = sorted({m["nearest_ratio"] for m in unconfigured})
        out.append(
            f"{len(unconfigured)} one-day move(s) that held match a split ratio not in "
            "processing.split_detection.ratios (the largest first): "
            + _largest(unconfigured, lambda m: f"{m['ticker']}@{m['date']} "
                                               f"{move_label(m['change'])} "
                                               f"({split_label(m['nearest_ratio'])}?)")
            + f". If they are unadjusted splits, add {', '.join(f'{r:g}' for r in ratios)} to "
            "processing.split_detection.ratios (they are then repaired); a real drop is kept "
            "as it is")
    if unexplained:
        shown = _largest(unexplained, lambda m: f"{m['ticker']}@{m['date']} "
                         f"{move_label(m['change'])}"
                         + (f" ({_integer_split_label(m)}?)" if m.get("integer_ratio") else ""))
        whole = sorted({m["integer_ratio"] for m in unexplained if m.get("integer_ratio")})
        out.append(
            f"{len(unexplained)} one-day move(s) beyond processing.split_detection."
            "max_abs_return held for confirm_days and match no configured split ratio (the "
            "largest first): " + shown + ". A real crash or jump is kept as it is; "
            + (f"if these are unadjusted splits, add {', '.join(map(str, whole))} to "
               "processing.split_detection.ratios or adjust the file"
               if whole else "check the file if one is an unadjusted split or a bad print"))
    return out


def split_label(ratio: float) -> str:
    """A pre / post price ratio as a split's name: 2 -> "2:1 split", 1.5 -> "3:2 split", 0.2 ->
    "1:5 reverse split" (the price x5)."""
    if float(ratio) >= 1.0:
        fraction = Fraction(float(ratio)).limit_denominator(20)
        return f"{fraction.numerator}:{fraction.denominator} split"
    inverse = Fraction(1.0 / float(ratio)).limit_denominator(20)  # 1:40 stays 1:40
    return f"{inverse.denominator}:{inverse.numerator} reverse split"


def _integer_split_label(move: dict) -> str:
    """The whole ratio an unexplained move fits, named in its direction (a rise: reverse)."""
    whole = float(move["integer_ratio"])
    return split_label(whole if move["change"] < 0 else 1.0 / whole)


def _largest(moves: list[dict], shown: Callable[[dict], str], count: int = 5) -> str:
    """The `count` largest moves (in log terms), named, and how many more there are: the one
    that matters most is never the one left out."""
    ordered = sorted(moves, key=lambda m: -abs(math.log(max(1.0 + float(m["change"]), 1e-12))))
    more = len(moves) - count
    return ", ".join(shown(m) for m in ordered[:count]) + (f" and {more} more" if more > 0 else "")


def _holds_new_level(before: float, level: float, after: np.ndarray) -> bool:
    """True when every later close is nearer (in log terms) to the new level than to the old one:
    a split moves the price to a new level and it stays there; a crash that rebounds does not."""
    midpoint = np.sqrt(before * level)  # geometric midpoint between the old and the new level
    return bool(np.all(after < midpoint)) if level < before else bool(np.all(after > midpoint))


def zero_return_streaks(close: pd.DataFrame,
                        carried: pd.DataFrame | None = None,
                        traded: pd.DataFrame | None = None) -> pd.DataFrame:
    """Running length of the current zero-return streak at each cell (0 when the price moved).
    `carried`: cells whose close the forward fill supplied; they neither lengthen nor end a
    streak (the project's own fill after a delisting or a gap is no stale print). `traded`:
    cells that were trades (see `traded_at_close`): an unchanged close that traded is a price,
    and ends the streak as a move does."""
    unchanged = (close == close.shift(1)) & close.notna()
    if traded is not None:
        unchanged &= ~traded.reindex_like(close).fillna(False).astype(bool)
    arr = unchanged.to_numpy()
    held = (np.zeros(arr.shape, dtype=bool) if carried is None
            else carried.reindex_like(close).fillna(False).to_numpy(dtype=bool))
    run = np.zeros(arr.shape, dtype=np.int32)
    for i in range(1, arr.shape[0]):  # one vector op per date; the recursion is inherently serial
        run[i] = np.where(held[i], run[i - 1], np.where(arr[i], run[i - 1] + 1, 0))
    return pd.DataFrame(run, index=close.index, columns=close.columns)


def flat_dates(close: pd.DataFrame, min_names: int = 2) -> pd.DatetimeIndex:
    """Dates on which no name's close moved: every name with a close then and on the date
    before (at least `min_names` of them) has the same close. A real trading day moves some
    price; such a date is usually a holiday or weekend row copied from the day before."""
    both = close.notna() & close.shift(1).notna()
    moved = (close != close.shift(1)) & both
    flat = (both.sum(axis=1) >= min_names) & ~moved.any(axis=1)
    return pd.DatetimeIndex(close.index[flat.to_numpy()])


def bars_outside_range(panel: PanelMatrices, tolerance: float = 1e-6) -> int:
    """Bars whose open or close lies outside [low, high] (beyond a relative `tolerance` for
    rounding): an adjusted close beside raw open / high / low, as some exports give, or broken
    rows. Counted, not changed; 0 without high and low."""
    values = panel.values
    if "high" not in values or "low" not in values:
        return 0
    high, low = values["high"], values["low"]
    outside = pd.DataFrame(False, index=high.index, columns=high.columns)
    for name in ("open", "close"):
        if name in values:
            price = values[name].reindex_like(high)
            outside |= (price > high * (1 + tolerance)) | (price < low * (1 - tolerance))
    return int(outside.to_numpy().sum())


def duplicate_series(close: pd.DataFrame, min_dates: int = 20) -> list[list[str]]:
    """Groups of tickers whose closes are identical on every date both have a close, on at least
    `min_dates` such dates with more than one price: one name exported twice (a share class, an
    old and a new code, a copy covering part of the other's life), which counts double in every
    cross-section while both trade."""
    values = close.to_numpy(dtype=np.float64)
    n = values.shape[1]
    # candidates: pairs next to each other in a date's sorted closes with the same close (a
    # third name at that price can sit between a copy and its original: half the dates suffice)
    keys = []
    for row in values:
        present = np.flatnonzero(np.isfinite(row))
        order = present[np.argsort(row[present], kind="stable")]
        same = np.flatnonzero(row[order][1:] == row[order][:-1])
        low, high = np.minimum(order[same], order[same + 1]), np.maximum(order[same], order[same + 1])
        keys.append(low.astype(np.int64) * n + high)
    candidates, counts = np.unique(np.concatenate(keys) if keys else np.array([], np.int64),
                                   return_counts=True)
    finite = np.isfinite(values)
    linked = []
    for key in candidates[counts >= max(min_dates // 2, 1)]:
        a, b = divmod(int(key), n)
        both = finite[:, a] & finite[:, b]
        if (both.sum() >= min_dates and np.array_equal(values[both, a], values[both, b])
                and len(np.unique(values[both, a])) > 1):
            linked.append((a, b))
    return _connected_groups(linked, [str(c) for c in close.columns])


def _connected_groups(pairs: list[tuple[int, int]], names: list[str]) -> list[list[str]]:
    """The names linked by `pairs`, as sorted groups (a copy of a copy is one group)."""
    parent: dict[int, int] = {}

    def root(k: int) -> int:
        while parent.setdefault(k, k) != k:
            k = parent[k]
        return k

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[str]] = {}
    for k in parent:
        groups.setdefault(root(k), []).append(names[k])
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def names_without_volume(panel: PanelMatrices) -> list[str]:
    """Names with closes whose volume is zero or missing on every date they have a close (a
    price-only export that filled the volume column with zeros): their volume features are
    constant. Empty when the panel has no volume column."""
    volume = panel.values.get("volume")
    if volume is None:
        return []
    priced = panel.close.notna()
    traded = (volume.reindex_like(panel.close).fillna(0) != 0) & priced
    silent = priced.any(axis=0) & ~traded.any(axis=0)
    return sorted(map(str, panel.close.columns[silent.to_numpy()]))


def first_positive_volume(panel: PanelMatrices) -> dict[str, str]:
    """ticker -> first date with a positive volume (ISO), for names that ever reported one: the
    serving chain's slice needs it to tell a suspension from a price-only name's zeros."""
    volume = panel.values.get("volume")
    if volume is None:
        return {}
    positive = volume.reindex_like(panel.close) > 0
    first = positive.idxmax(axis=0)[positive.any(axis=0)]
    return {str(t): str(pd.Timestamp(d).date()) for t, d in first.items()}


def _zero_volume_rows(panel: PanelMatrices, first_volume: dict[str, str] | None
                      ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Rows with volume 0 that say something (a name that reported a positive volume before,
    here or in `first_volume`, on a date some name has volume), and whether the close is
    unchanged from the name's previous close. None without a volume column."""
    volume = panel.values.get("volume")
    if volume is None:
        return None
    volume = volume.reindex_like(panel.close)
    close = panel.close
    unchanged = close.eq(close.ffill().shift(1)) & close.notna()
    reported = (volume > 0).cummax()  # a positive volume on an earlier date (0 on this one)
    if first_volume:
        since = pd.to_datetime(pd.Series(first_volume).reindex(close.columns.astype(str)))
        reported |= pd.DataFrame(close.index.to_numpy()[:, None] >= since.to_numpy()[None, :],
                                 index=close.index, columns=close.columns)
    market_has_volume = (volume > 0).any(axis=1)
    zero = (volume.eq(0) & close.notna() & reported).mul(market_has_volume, axis=0).astype(bool)
    return zero, unchanged


def untraded_cells(panel: PanelMatrices, first_volume: dict[str, str] | None = None,
                   moves: bool = False) -> pd.DataFrame | None:
    """Rows the file itself marks as not traded (a suspension, a halt): volume 0 and the close
    unchanged from the name's previous close (a vendor's copy), and the dates after such a row
    without a close (the forward fill's copies: still suspended). With `moves`, also volume-0 rows
    whose close moved (`zero_volume_moves`: a quote). Only on names that have reported a positive
    volume before (a price-only export's zeros say nothing; `first_volume`, from
    `first_positive_volume` on the full history, covers dates before a slice) and on dates some
    name has volume (a day the vendor sent no volume at all). Causal: each cell reads that day
    and earlier. None without a volume column."""
    rows = _zero_volume_rows(panel, first_volume)
    if rows is None:
        return None
    zero, unchanged = rows
    flagged = zero if moves else zero & unchanged
    # a missing row after a suspended one: still suspended until a traded row says otherwise
    carried = flagged.astype(float).where(panel.close.notna()).ffill().fillna(0.0)
    return carried.astype(bool)


def zero_volume_moves(panel: PanelMatrices, first_volume: dict[str, str] | None = None
                      ) -> pd.DataFrame | None:
    """Rows with volume 0 whose close moved from the name's previous close: not a copy, so not a
    suspension, yet nothing traded by the file's own count. Many vendors print the bid / ask
    midpoint on such a day (a quote, no trade); others lose the volume of a day that did trade.
    Same conditions as `untraded_cells`; None without a volume column."""
    rows = _zero_volume_rows(panel, first_volume)
    if rows is None:
        return None
    zero, unchanged = rows
    return zero & ~unchanged


def untraded_summary(untraded: pd.DataFrame | None, examples: int = 3) -> dict:
    """{"rows": n, "names": n, "runs": n, "examples": ["TICKER from DATE (k date(s))", ...]}: the
    longest runs of consecutive not-traded dates (two halts of one name are two runs), for the
    data-quality report."""
    if untraded is None or not untraded.to_numpy().any():
        return {"rows": 0, "names": 0, "runs": 0, "examples": []}
    flags = untraded.to_numpy(dtype=bool)
    padded = np.vstack([np.zeros((1, flags.shape[1]), bool), flags,
                        np.zeros((1, flags.shape[1]), bool)]).astype(np.int8)
    edges = np.diff(padded, axis=0)
    starts, start_cols = np.nonzero(edges == 1)
    ends, end_cols = np.nonzero(edges == -1)
    # both in (column, row) order after sorting: the k-th start pairs with the k-th end
    start_order, end_order = np.lexsort((starts, start_cols)), np.lexsort((ends, end_cols))
    starts, cols = starts[start_order], start_cols[start_order]
    lengths = ends[end_order] - starts
    longest = np.lexsort((starts, cols, -lengths))[:examples]
    shown = [f"{untraded.columns[cols[k]]} from {untraded.index[starts[k]].date()} "
             f"({int(lengths[k])} date(s))" for k in longest]
    return {"rows": int(flags.sum()), "names": int(flags.any(axis=0).sum()),
            "runs": int(len(lengths)), "examples": shown}


@dataclass(frozen=True)
class StaleSummary:
    streaks: int  # number of zero-return streaks of at least min_streak days
    stale_days: int  # zero-return days inside those streaks (a streak of 8 counts 8)
    masked_days: int
    worst: dict[str, int]  # ticker -> longest streak


def traded_at_close(panel: PanelMatrices) -> pd.DataFrame | None:
    """(date x name) rows with a volume above 0 that differs from the day before's: a trade.
    A frozen feed copies the volume too, or sends none or 0; a name on a coarse price grid (a
    penny stock a tick or two above zero) trades at an unchanged close for weeks. None without a
    volume column."""
    volume = panel.values.get("volume")
    if volume is None:
        return None
    return (volume > 0) & volume.ne(volume.shift(1)) & volume.notna()


def handle_stale_prices(
    panel: PanelMatrices, min_streak: int, mask_after: int | None,
    carried: pd.DataFrame | None = None, volume_trades: bool = False,
) -> tuple[PanelMatrices, StaleSummary]:
    """Count zero-return streaks of >= min_streak days; mask prices after `mask_after` days of one.
    `carried`: cells the forward fill supplied (see `zero_return_streaks`). `volume_trades`: an
    unchanged close with a fresh volume (`traded_at_close`) ends a streak."""
    run = zero_return_streaks(panel.close, carried,
                              traded_at_close(panel) if volume_trades else None)
    arr = run.to_numpy()
    ends = (arr >= min_streak) & np.vstack([arr[1:] == 0, np.ones((1, arr.shape[1]), bool)])
    longest = run.max(axis=0)
    worst = {
        str(t): int(v) for t, v in longest[longest >= min_streak].sort_values().tail(5).items()
    }
    masked = 0
    values = panel.values
    if mask_after:
        mask = arr > mask_after
        masked = int(mask.sum())
        if masked:
            values = {
                name: m.mask(mask) if name in PRICE_FIELDS else m for name, m in values.items()
            }
    # a streak's count where it ends is its length (carried cells neither lengthen nor end it)
    summary = StaleSummary(int(ends.sum()), int(arr[ends].sum()), masked, worst)
    return PanelMatrices(values, panel.sector, panel.extra_columns), summary


def sparse_columns(panel: PanelMatrices, columns: list[str], max_missing: float = 0.5
                   ) -> dict[str, dict]:
    """Optional columns (a user factor, volume) that models would mostly see imputed: missing on
    more than `max_missing` of the cells with a close, or on every name from some date to the
    end (a factor the vendor stopped sending: the test period and inference then see only its
    training median). {column: {"missing_share": s, "missing_from": first date of the final
    all-missing run or None}}."""
    has_price = panel.close.notna()
    n_priced = int(has_price.to_numpy().sum())
    out = {}
    for name in columns:
        matrix = panel.values[name]
        missing = matrix.isna() & has_price
        share = float(missing.to_numpy().sum() / n_priced) if n_priced else 0.0
        empty = (~matrix.notna().any(axis=1)).to_numpy()
        missing_from = None
        if len(empty) and empty[-1] and not empty.all():
            start = len(empty) - int(np.argmin(empty[::-1]))  # first date of the final run
            missing_from = str(matrix.index[start].date())
        if share > max_missing or missing_from is not None:
            out[str(name)] = {"missing_share": round(share, 4), "missing_from": missing_from}
    return out


def late_columns(panel: PanelMatrices, columns: list[str], min_dates: int) -> dict[str, dict]:
    """Columns (volume, open / high / low, a user factor) with no value on any name over the
    panel's first `min_dates` or more dates that have a close: what is built from them starts
    later than the prices. {column: {"first_date": its first date with a value (None: never),
    "dates_without": dates with a close before it}}."""
    priced = panel.close.notna().any(axis=1).to_numpy()
    out = {}
    for name in columns:
        has = panel.values[name].notna().any(axis=1).to_numpy()
        first = int(np.argmax(has)) if has.any() else len(has)
        before = int(priced[:first].sum())
        if before >= min_dates:
            out[str(name)] = {"first_date": str(panel.close.index[first].date())
                              if first < len(has) else None, "dates_without": before}
    return out


def impute_cross_sectional_median(
    panel: PanelMatrices, columns: list[str]
) -> tuple[PanelMatrices, int]:
    """Fill gaps of the given columns, where a close exists, with that date's median over the
    cross-section (the eligible names when the universe is decided, else the names with a close).
    Uses data at t only; a date with no value to take a median of leaves the gap as NaN."""
    has_price = panel.close.notna()
    members = has_price if panel.eligible is None else panel.eligible.astype(bool) & has_price
    values = dict(panel.values)
    filled = 0
    for name in columns:
        matrix = values[name]
        median = matrix.where(members).median(axis=1, skipna=True)
        gaps = matrix.isna() & has_price
        imputed = matrix.mask(gaps, pd.DataFrame(
            np.broadcast_to(median.to_numpy()[:, None], matrix.shape),
            index=matrix.index, columns=matrix.columns,
        ))
        filled += int((gaps & imputed.notna()).to_numpy().sum())
        values[name] = imputed
    return replace(panel, values=values), filled


def daily_returns(close: pd.DataFrame, withheld: pd.DataFrame | None = None,
                  listed_from: pd.DataFrame | None = None) -> pd.DataFrame:
    """Close-to-close returns within a ticker (NaN where either close is missing). After a run
    of `withheld` cells (a suspected split awaiting confirmation) the first close is measured from
    the last close before the run: the real move of a crash that rebounded, or the split-adjusted
    one, is earned on the day it is known (a backtest holding the name loses nothing of it).
    A relisted code's first close (`listed_from`, core.data.listings) has no return: the close
    before it was another company's."""
    previous = close.shift(1)
    if withheld is not None and withheld.to_numpy().any():
        held = withheld.reindex_like(close).fillna(False).astype(bool)
        after_run = held.shift(1, fill_value=False) & ~held
        before_run = close.mask(held).ffill().shift(1)  # the last close before the run
        previous = previous.mask(after_run, before_run)
    starts = listings.listing_starts(listed_from)
    if starts is not None:
        previous = previous.mask(starts.reindex_like(close).fillna(False).astype(bool))
    return close / previous - 1.0
