"""Synthetic market with known answers: a planted signal, latent regimes and true expected returns.

Used by known-answer tests and benchmarks: every quantity a model should recover is stored next to
the prices. Daily log return of ticker i on day s:

    r[s, i] = beta[i] * market[s] + sector[s, sector(i)] + drift[s, i] + eps[s, i]

- market[s] ~ N(mu[regime[s]], sigma[regime[s]]): a 3-state Markov chain (bull: positive drift and
  low vol, bear: negative drift and high vol) drives the market factor.
- drift[s, i] = signal_strength / horizon * multiplier[regime[s]] * signal_1[s - d - 1, i]
              - reversal_strength / reversal_window * (excess log return of i over the
                reversal_window days before s)
  so signal_1 observed at t drives the first day (t+d+1) of the label window close(t+d) ->
  close(t+d+h), and its persistence carries it through the rest of the window.
- signal_1 and noise_1..noise_k are per-ticker AR(1) series standardised across tickers each day;
  the noise columns never enter the returns.
- Regime factor payoffs (`factor_payoffs`, off by default): price-derived factors computed from the
  realised returns up to s - d - 1 (momentum: `momentum_window`-day log return; reversal: minus the
  `reversal_window`-day log return; low_volatility: minus the `volatility_window`-day volatility of
  daily log returns), each standardised across tickers, add
      drift[s, i] += payoff[factor][regime[s]] / horizon * z_factor[s - d - 1, i]
  so which factor pays, and with which sign, is set by the latent regime. A model has to compute
  the factors from prices and tell the state; with mild `market_drift` / `market_vol` differences
  (see REGIME_FACTOR_MARKET) the state shows only partly in the index.

`expected_return` at t is the mean log return of the label window s = t+d+1 .. t+d+h given the
latent path (regimes, betas, signals) and the returns up to the window's start t+d: the market
drift through beta plus the signal drift the generator put there, plus the reversal drift forecast
from the returns before the window (the reversal's reaction to shocks inside the window is not
knowable when the window opens, so it is left out). The factor-payoff drift is forecast the same
way: each window day's payoff (its true regime) times the latest factor scores known at the
window's start t+d (scores move with shocks inside the window, which are not knowable). With every volatility at zero it equals the
realised log return of the window exactly; for the small values involved it is close to the
expected simple return the labels measure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.signal import lfilter

REGIMES = ("bull", "neutral", "bear")

DEFAULT_SIGNAL_MULTIPLIERS = MappingProxyType({"bull": 1.0, "neutral": 1.0, "bear": 1.0})
# Daily market log-return mean and volatility per regime: a year of bull is about +20% at 11% vol,
# neutral +8% at 16%, bear -20% at 29%.
DEFAULT_MARKET_DRIFT = MappingProxyType({"bull": 0.0008, "neutral": 0.0003, "bear": -0.0008})
DEFAULT_MARKET_VOL = MappingProxyType({"bull": 0.007, "neutral": 0.010, "bear": 0.018})

INITIAL_MARKET_LEVEL = 100.0

PAYOFF_FACTORS = ("momentum", "reversal", "low_volatility")
# The hard regime mode (issue 12): which price factor pays switches with the latent state, and the
# state moves the index only mildly (drifts and vols much closer than the defaults). Payoffs are
# horizon log returns per cross-sectional standard deviation of the factor. Momentum pays in bull
# and turns against you in bear; reversal pays in neutral; low volatility pays in bear and costs
# in bull.
REGIME_FACTOR_MARKET = MappingProxyType({
    "signal_strength": 0.0,
    "n_noise_factors": 0,
    "factor_payoffs": {
        "momentum": {"bull": 0.010, "neutral": 0.0, "bear": -0.010},
        "reversal": {"bull": 0.0, "neutral": 0.010, "bear": 0.0},
        "low_volatility": {"bull": -0.006, "neutral": 0.0, "bear": 0.010},
    },
    "market_drift": {"bull": 0.0005, "neutral": 0.0002, "bear": -0.0002},
    "market_vol": {"bull": 0.009, "neutral": 0.010, "bear": 0.012},
})

# DataFrame.attrs key (kept in a Parquet file's metadata) of the horizon and delay a generated
# panel's signal was planted for, by generator parameter name
TIMING_ATTR = "bma_quant_synthetic_timing"
# DataFrame.attrs key of the generated market a file belongs to (its prices, index, regimes and
# expected returns share it): a run told to read one market's prices with another's index or
# regimes is stopped (run_hooks/preflight.py)
MARKET_ATTR = "bma_quant_synthetic_market"


def market_id(params: dict) -> str:
    """The generated market's identity: a digest of the generator's parameters (the same
    parameters generate the same market)."""
    import hashlib
    import json

    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]



@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no boolean equality
class SyntheticMarket:
    """A generated market and the truths behind it.

    panel: one row per (date, ticker), sorted by date then ticker.
    market: `date`, `level` of the market factor index.
    regimes: `date`, `regime` (the latent chain state, not an estimate).
    expected_return: `date`, `ticker`, `expected_return` over close(t+d) -> close(t+d+h).
    """

    panel: pd.DataFrame
    market: pd.DataFrame
    regimes: pd.DataFrame
    expected_return: pd.DataFrame


def generate_synthetic_market(
    n_tickers: int = 50,
    n_days: int = 756,
    *,
    seed: int = 0,
    start: str = "2010-01-04",
    n_sectors: int = 5,
    signal_strength: float = 0.02,
    signal_persistence: float = 0.97,
    regime_signal_multipliers: Mapping[str, float] = DEFAULT_SIGNAL_MULTIPLIERS,
    reversal_strength: float = 0.0,
    reversal_window: int = 5,
    n_noise_factors: int = 3,
    horizon: int = 10,
    execution_delay: int = 1,
    regime_stay_probability: float = 0.985,
    market_drift: Mapping[str, float] = DEFAULT_MARKET_DRIFT,
    market_vol: Mapping[str, float] = DEFAULT_MARKET_VOL,
    beta_dispersion: float = 0.25,
    sector_vol: float = 0.008,
    idiosyncratic_vol: float = 0.03,
    ohlcv: bool = True,
    factor_payoffs: Mapping[str, Mapping[str, float]] | None = None,
    momentum_window: int = 20,
    volatility_window: int = 20,
) -> SyntheticMarket:
    """Generate a daily panel with a planted signal, latent regimes and known expected returns.

    signal_strength: expected log return over the horizon per cross-sectional standard deviation of
        signal_1 (before regime multipliers and persistence decay).
    signal_persistence: AR(1) coefficient of signal_1 and the noise factors, in [0, 1).
    regime_signal_multipliers: scales the signal's effect per regime; {"bull": 1, "neutral": 0,
        "bear": -1} makes it flip sign between regimes.
    reversal_strength: each day's drift is -reversal_strength / reversal_window times the ticker's
        past reversal_window-day log return in excess of the cross-sectional mean (0 disables it).
    regime_stay_probability: daily probability that the regime chain stays in its state; on a
        switch it moves to one of the other two states with equal probability.
    beta_dispersion, sector_vol, idiosyncratic_vol: cross-sectional spread of market betas around
        1 and daily volatilities of the sector and idiosyncratic shocks.
    ohlcv: add open, high, low and volume columns (otherwise close only).
    factor_payoffs: {factor: {regime: payoff}} for factors in PAYOFF_FACTORS (missing factors pay
        nothing); payoff = horizon log return per cross-sectional standard deviation of the factor
        in that regime. None disables the mode.
    momentum_window, volatility_window: windows of the momentum and low-volatility factors (the
        reversal factor uses reversal_window).
    """
    _validate_arguments(
        n_tickers=n_tickers, n_days=n_days, n_sectors=n_sectors,
        signal_persistence=signal_persistence, reversal_strength=reversal_strength,
        reversal_window=reversal_window, n_noise_factors=n_noise_factors, horizon=horizon,
        execution_delay=execution_delay, regime_stay_probability=regime_stay_probability,
        factor_payoffs=factor_payoffs, factor_windows=(momentum_window, volatility_window),
        per_regime={"regime_signal_multipliers": regime_signal_multipliers,
                    "market_drift": market_drift, "market_vol": market_vol},
    )
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start=start, periods=n_days).astype("datetime64[ns]")
    # The draws below keep one order (chain, market, sectors, betas, vols, shocks, factors,
    # prices, bars): a seed gives the same market in every version that keeps it.
    regime_codes = _simulate_regime_chain(n_days, regime_stay_probability, rng)
    mu = _per_regime_array(market_drift)[regime_codes]
    sigma = _per_regime_array(market_vol)[regime_codes]
    market_returns = mu + sigma * rng.standard_normal(n_days)
    market_returns[0] = 0.0
    names = _draw_cross_section(rng, n_days, n_tickers, n_sectors, sector_vol=sector_vol,
                                beta_dispersion=beta_dispersion,
                                idiosyncratic_vol=idiosyncratic_vol)
    factors = _standardised_ar1(rng, n_days, n_tickers, 1 + n_noise_factors, signal_persistence)

    # Planted mean of each day's log return that does not depend on realised returns: market drift
    # through beta plus the signal's drift.
    exogenous_drift = names.betas[None, :] * mu[:, None]
    lag = execution_delay + 1
    multipliers = _per_regime_array(regime_signal_multipliers)[regime_codes]
    exogenous_drift[lag:] += (signal_strength / horizon) * multipliers[lag:, None] * factors[0][:-lag]
    exogenous_drift[0] = 0.0
    returns = exogenous_drift + names.shocks(market_returns - mu)
    returns[0] = 0.0  # day 0 is the base date of every price series
    expected = _window_sums(exogenous_drift, execution_delay, horizon)
    windows = {"momentum": momentum_window, "reversal": reversal_window,
               "low_volatility": volatility_window}
    _add_price_patterns(returns, expected, exogenous_drift, regime_codes, factor_payoffs,
                        windows, reversal_strength, execution_delay, horizon)

    start_prices = rng.lognormal(np.log(50.0), 0.8, n_tickers)
    close = start_prices[None, :] * np.exp(np.cumsum(returns, axis=0))
    columns = _price_columns(rng, close, returns, names.ticker_vol, ohlcv)
    return _market_frames(dates, names.sector_of_ticker, regime_codes, market_returns, columns,
                          factors, expected)


def _add_price_patterns(returns: np.ndarray, expected: np.ndarray, exogenous_drift: np.ndarray,
                        regime_codes: np.ndarray,
                        factor_payoffs: Mapping[str, Mapping[str, float]] | None,
                        windows: Mapping[str, int], reversal_strength: float,
                        execution_delay: int, horizon: int) -> None:
    """Drifts that react to realised prices (regime factor payoffs, short-term reversal), added
    to `returns` day by day, and their forecast at each window's start added to `expected`
    (both in place)."""
    reversal_window = windows["reversal"]
    if factor_payoffs:
        payoffs = _payoff_matrix(factor_payoffs)[:, regime_codes]  # (factor, day)
        scores = _add_factor_payoffs(returns, payoffs, windows, execution_delay + 1, horizon,
                                     reversal_strength, reversal_window)
        expected += _expected_factor_sums(scores, payoffs, execution_delay, horizon)
    elif reversal_strength > 0:
        _add_reversal(returns, reversal_strength, reversal_window)
    if reversal_strength > 0:
        expected += _expected_reversal_sums(
            returns, exogenous_drift, reversal_strength, reversal_window, execution_delay, horizon
        )


@dataclass(frozen=True, eq=False)
class _CrossSection:
    """Per-ticker draws: sector membership, market betas, idiosyncratic vols, and the daily sector
    and idiosyncratic shocks."""

    sector_of_ticker: np.ndarray
    sector_returns: np.ndarray
    betas: np.ndarray
    ticker_vol: np.ndarray
    idiosyncratic: np.ndarray

    def shocks(self, market_surprise: np.ndarray) -> np.ndarray:
        """(day x ticker) zero-mean part of the log returns given the market's surprises."""
        return (self.betas[None, :] * market_surprise[:, None]
                + self.sector_returns[:, self.sector_of_ticker] + self.idiosyncratic)


def _draw_cross_section(rng: np.random.Generator, n_days: int, n_tickers: int, n_sectors: int,
                        *, sector_vol: float, beta_dispersion: float,
                        idiosyncratic_vol: float) -> _CrossSection:
    sector_of_ticker = np.arange(n_tickers) % n_sectors
    sector_returns = sector_vol * rng.standard_normal((n_days, n_sectors))
    betas = np.clip(1.0 + beta_dispersion * rng.standard_normal(n_tickers), 0.2, 2.5)
    # Per-ticker idiosyncratic vol spread (lognormal with mean 1) so names differ in riskiness.
    ticker_vol = idiosyncratic_vol * rng.lognormal(-0.5 * 0.3**2, 0.3, n_tickers)
    idiosyncratic = ticker_vol * rng.standard_normal((n_days, n_tickers))
    return _CrossSection(sector_of_ticker, sector_returns, betas, ticker_vol, idiosyncratic)


def _price_columns(rng: np.random.Generator, close: np.ndarray, returns: np.ndarray,
                   ticker_vol: np.ndarray, ohlcv: bool) -> dict[str, np.ndarray]:
    """open, high, low, close, volume (close only without `ohlcv`), as (day x ticker) arrays."""
    if not ohlcv:
        return {"close": close}
    bars = _ohlcv_columns(rng, close, returns, ticker_vol)
    columns = {name: bars[name] for name in ("open", "high", "low")}
    columns.update(close=close, volume=bars["volume"])
    return columns


def _market_frames(dates: pd.DatetimeIndex, sector_of_ticker: np.ndarray,
                   regime_codes: np.ndarray, market_returns: np.ndarray,
                   columns: dict[str, np.ndarray], factors: np.ndarray,
                   expected: np.ndarray) -> SyntheticMarket:
    """The long panel (prices, signal_1, noise_k, sector) and the truths as frames."""
    columns = {**columns, "signal_1": factors[0]}
    for k in range(1, len(factors)):
        columns[f"noise_{k}"] = factors[k]
    n_tickers = len(sector_of_ticker)
    tickers = np.array([f"T{i:04d}" for i in range(n_tickers)], dtype=object)
    sectors = np.array([f"S{k}" for k in sector_of_ticker], dtype=object)
    panel = _long_frame(
        dates, tickers, {"sector": np.broadcast_to(sectors, columns["close"].shape), **columns}
    )
    return SyntheticMarket(
        panel=panel,
        market=pd.DataFrame(
            {"date": dates, "level": INITIAL_MARKET_LEVEL * np.exp(np.cumsum(market_returns))}
        ),
        regimes=pd.DataFrame(
            {"date": dates, "regime": pd.Series(np.array(REGIMES)[regime_codes], dtype=str)}
        ),
        expected_return=_long_frame(dates, tickers, {"expected_return": expected}),
    )


def to_wide_close(panel: pd.DataFrame) -> pd.DataFrame:
    """Wide layout of DESIGN §2: a `date` column plus one close-price column per ticker."""
    wide = panel.pivot(index="date", columns="ticker", values="close")
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()


def _simulate_regime_chain(n_days: int, stay: float, rng: np.random.Generator) -> np.ndarray:
    """Codes into REGIMES; a switch moves 1 or 2 steps round the 3 states, so the chain is a
    cumulative sum modulo 3 (vectorised, no loop over days)."""
    switches = rng.random(n_days) >= stay
    steps = rng.integers(1, 3, n_days) * switches
    steps[0] = rng.integers(0, 3)  # stationary (uniform) initial state
    return np.cumsum(steps) % 3


def _standardised_ar1(
    rng: np.random.Generator, n_days: int, n_tickers: int, n_series: int, persistence: float
) -> np.ndarray:
    """(n_series, n_days, n_tickers) AR(1) paths, standardised across tickers on each day.

    Day t's value uses innovations up to t only, so the columns are legitimate features at t.
    """
    innovations = rng.standard_normal((n_series, n_days, n_tickers))
    scale = np.sqrt(1.0 - persistence**2)
    innovations[:, 0] /= scale  # start in the stationary distribution
    paths = lfilter([scale], [1.0, -persistence], innovations, axis=1)
    paths -= paths.mean(axis=2, keepdims=True)
    paths /= paths.std(axis=2, keepdims=True)
    return paths


def _add_reversal(returns: np.ndarray, strength: float, window: int) -> None:
    """Add short-term reversal drift in place (it feeds on realised returns: hence a day loop)."""
    trailing = np.zeros(returns.shape[1])  # sum of the `window` returns before day s
    for s in range(1, returns.shape[0]):
        trailing += returns[s - 1]
        if s - 1 - window >= 0:
            trailing -= returns[s - 1 - window]
        returns[s] += _reversal_drift(trailing, strength, window)


def price_factor_scores(returns: np.ndarray, windows: Mapping[str, int]) -> np.ndarray:
    """(len(PAYOFF_FACTORS), n_tickers) factor values standardised across tickers, from the daily
    log returns `returns` (days x tickers, last row = the scoring day); 0 while fewer rows than a
    factor's window are given."""
    out = np.zeros((len(PAYOFF_FACTORS), returns.shape[1]))
    for k, name in enumerate(PAYOFF_FACTORS):
        window = windows[name]
        if returns.shape[0] < window:
            continue
        recent = returns[-window:]
        if name == "momentum":
            raw = recent.sum(axis=0)
        elif name == "reversal":
            raw = -recent.sum(axis=0)
        else:
            raw = -recent.std(axis=0)
        spread = raw.std()
        out[k] = (raw - raw.mean()) / spread if spread > 0 else 0.0
    return out


def _add_factor_payoffs(
    returns: np.ndarray,
    payoffs: np.ndarray,
    windows: Mapping[str, int],
    lag: int,
    horizon: int,
    reversal_strength: float,
    reversal_window: int,
) -> np.ndarray:
    """Add the regime-dependent factor drift (and the reversal drift, if any) in place; return the
    (day, factor, ticker) scores. The factors feed on realised returns, hence a day loop; the
    scores of day s - lag are final before day s is drawn."""
    n_days, n_tickers = returns.shape
    longest = max(windows.values())
    scores = np.zeros((n_days, len(PAYOFF_FACTORS), n_tickers))
    trailing = np.zeros(n_tickers)
    for s in range(1, n_days):
        if reversal_strength > 0:
            trailing += returns[s - 1]
            if s - 1 - reversal_window >= 0:
                trailing -= returns[s - 1 - reversal_window]
            returns[s] += _reversal_drift(trailing, reversal_strength, reversal_window)
        if s >= lag:
            returns[s] += payoffs[:, s] @ scores[s - lag] / horizon
        # Scores of day s from returns up to s (rows 1..s: day 0 has no return).
        scores[s] = price_factor_scores(returns[max(1, s - longest + 1): s + 1], windows)
    return scores


def _expected_factor_sums(
    scores: np.ndarray, payoffs: np.ndarray, execution_delay: int, horizon: int
) -> np.ndarray:
    """Factor drift expected over each window t+d+1 .. t+d+h from the scores known at its start
    u = t+d: window day s uses the scores of s - d - 1 when that is <= u, else those of u."""
    n_days = scores.shape[0]
    sums = np.full((n_days, scores.shape[2]), np.nan)
    n_windows = n_days - execution_delay - horizon
    if n_windows <= 0:
        return sums
    t = np.arange(n_windows)
    total = np.zeros((n_windows, scores.shape[2]))
    for k in range(1, horizon + 1):
        day = t + execution_delay + k
        known = np.minimum(day - execution_delay - 1, t + execution_delay)
        total += np.einsum("fn,nfi->ni", payoffs[:, day], scores[known]) / horizon
    sums[:n_windows] = total
    return sums


def _payoff_matrix(factor_payoffs: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """(len(PAYOFF_FACTORS), 3) payoffs by factor and regime code; absent factors pay 0."""
    return np.array([
        _per_regime_array(factor_payoffs[name]) if name in factor_payoffs else np.zeros(3)
        for name in PAYOFF_FACTORS
    ])


def _reversal_drift(trailing: np.ndarray, strength: float, window: int) -> np.ndarray:
    """-strength / window times the trailing return in excess of the cross-sectional mean (last
    axis: tickers)."""
    return -(strength / window) * (trailing - trailing.mean(axis=-1, keepdims=True))


def _expected_reversal_sums(
    returns: np.ndarray,
    exogenous_drift: np.ndarray,
    strength: float,
    window: int,
    execution_delay: int,
    horizon: int,
) -> np.ndarray:
    """Reversal drift expected over each label window from the returns up to its start u = t+d.

    Runs the reversal recursion forward from every start at once with future shocks at their mean
    (zero): a forecast return is the exogenous drift plus the reversal drift of the trailing sum
    of realised (<= u) and forecast (> u) returns.
    """
    n_days = returns.shape[0]
    sums = np.full(returns.shape, np.nan)
    n_windows = n_days - execution_delay - horizon
    if n_windows <= 0:
        return sums
    starts = np.arange(n_windows) + execution_delay  # u for t = 0 .. n_windows - 1
    padded = np.vstack([np.zeros((window, returns.shape[1])), returns])  # padded[j + window] = r[j]
    cumulative = np.cumsum(padded, axis=0)
    # Trailing sum of r[u - window + 1 .. u] for every start u.
    trailing = cumulative[starts + window] - cumulative[starts]
    forecasts: list[np.ndarray] = []
    total = np.zeros((n_windows, returns.shape[1]))
    for k in range(1, horizon + 1):
        drift = _reversal_drift(trailing, strength, window)
        total += drift
        forecast = exogenous_drift[starts + k] + drift
        forecasts.append(forecast)
        # Slide the window to end at u + k: day u + k - window leaves; realised while k <= window.
        leaving = padded[starts + k] if k <= window else forecasts[k - window - 1]
        trailing += forecast - leaving
    sums[:n_windows] = total
    return sums


def _ohlcv_columns(
    rng: np.random.Generator, close: np.ndarray, returns: np.ndarray, ticker_vol: np.ndarray
) -> dict[str, np.ndarray]:
    """Open on the day's path (a share of the return happens overnight), high/low bracketing open
    and close, volume rising with the size of the move."""
    previous_close = np.vstack([close[:1], close[:-1]])
    overnight = 0.3 * returns + 0.2 * ticker_vol * rng.standard_normal(close.shape)
    open_ = previous_close * np.exp(overnight)
    high = np.maximum(open_, close) * np.exp(
        np.abs(0.5 * ticker_vol * rng.standard_normal(close.shape))
    )
    low = np.minimum(open_, close) * np.exp(
        -np.abs(0.5 * ticker_vol * rng.standard_normal(close.shape))
    )
    base_volume = rng.lognormal(np.log(1e6), 1.0, close.shape[1])
    activity = np.exp(0.3 * rng.standard_normal(close.shape)) * (1.0 + 20.0 * np.abs(returns))
    volume = np.maximum(np.round(base_volume * activity), 1.0)
    return {"open": open_, "high": high, "low": low, "volume": volume}


def _window_sums(daily: np.ndarray, execution_delay: int, horizon: int) -> np.ndarray:
    """Sum of daily[t+d+1 .. t+d+h] for each t; NaN where the window runs past the last day."""
    n_days = daily.shape[0]
    cumulative = np.vstack([np.zeros((1, daily.shape[1])), np.cumsum(daily, axis=0)])
    sums = np.full(daily.shape, np.nan)
    n_windows = n_days - execution_delay - horizon  # dates whose window ends by the last day
    if n_windows > 0:
        t = np.arange(n_windows)
        sums[:n_windows] = (
            cumulative[t + execution_delay + horizon + 1] - cumulative[t + execution_delay + 1]
        )
    return sums


def _long_frame(
    dates: pd.DatetimeIndex, tickers: np.ndarray, columns: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Flatten (n_days, n_tickers) arrays row-major, so rows come sorted by date then ticker."""
    n_days, n_tickers = len(dates), len(tickers)
    frame = {
        "date": np.repeat(dates.values, n_tickers),
        "ticker": pd.array(np.tile(tickers, n_days), dtype=str),
    }
    for name, values in columns.items():
        flat = np.ascontiguousarray(values).reshape(-1)
        frame[name] = pd.array(flat, dtype=str) if flat.dtype == object else flat.astype(np.float64)
    return pd.DataFrame(frame)


def _per_regime_array(values: Mapping[str, float]) -> np.ndarray:
    return np.array([float(values[regime]) for regime in REGIMES])


def _validate_arguments(
    *,
    n_tickers: int,
    n_days: int,
    n_sectors: int,
    signal_persistence: float,
    reversal_strength: float,
    reversal_window: int,
    n_noise_factors: int,
    horizon: int,
    execution_delay: int,
    regime_stay_probability: float,
    factor_payoffs: Mapping[str, Mapping[str, float]] | None,
    factor_windows: tuple[int, int],
    per_regime: dict[str, Mapping[str, float]],
) -> None:
    if n_tickers < 2:
        raise ValueError(
            f"n_tickers must be >= 2 (signals are standardised across tickers), got {n_tickers}"
        )
    if n_sectors < 1:
        raise ValueError(f"n_sectors must be >= 1, got {n_sectors}")
    if horizon < 1 or execution_delay < 0:
        raise ValueError(
            f"need horizon >= 1 and execution_delay >= 0, got {horizon}, {execution_delay}"
        )
    if n_days <= execution_delay + horizon + 1:
        raise ValueError(
            f"n_days = {n_days} leaves no complete label window: need more than "
            f"execution_delay + horizon + 1 = {execution_delay + horizon + 1} days"
        )
    if not 0.0 <= signal_persistence < 1.0:
        raise ValueError(f"signal_persistence must be in [0, 1), got {signal_persistence}")
    if not 0.0 <= regime_stay_probability <= 1.0:
        raise ValueError(
            f"regime_stay_probability must be in [0, 1], got {regime_stay_probability}"
        )
    # The reversal feedback r[s] = -(a / w) * sum(past w excess returns) is a stable AR(w) only
    # for a < 1 (its coefficients' absolute sum is a).
    if not 0.0 <= reversal_strength < 1.0:
        raise ValueError(f"reversal_strength must be in [0, 1), got {reversal_strength}")
    if reversal_window < 1:
        raise ValueError(f"reversal_window must be >= 1, got {reversal_window}")
    if n_noise_factors < 0:
        raise ValueError(f"n_noise_factors must be >= 0, got {n_noise_factors}")
    if factor_payoffs:
        unknown = sorted(set(factor_payoffs) - set(PAYOFF_FACTORS))
        if unknown:
            raise ValueError(f"factor_payoffs: unknown factors {unknown}; "
                             f"known: {list(PAYOFF_FACTORS)}")
        per_regime = {**per_regime, **{f"factor_payoffs[{name}]": values
                                       for name, values in factor_payoffs.items()}}
    if min(factor_windows) < 2:
        raise ValueError(f"momentum_window and volatility_window must be >= 2, got "
                         f"{factor_windows}")
    for name, values in per_regime.items():
        missing = [regime for regime in REGIMES if regime not in values]
        if missing:
            raise ValueError(f"{name} needs a value for every regime {REGIMES}; missing {missing}")
