"""One-day moves as warnings say them."""

from __future__ import annotations


def move_label(change: float) -> str:
    """A one-day move as said in a warning: -33.3%; beyond x10 or /100 its factor (x1.26e+05,
    /1000), which a percentage of a bad print (a close of 1e308) writes with 300 digits."""
    if change >= 9:
        return f"x{1 + change:.4g}"
    if change <= -0.99:
        return f"/{1 / (1 + change):.4g}" if change > -1 else "-100.0%"
    return f"{100 * change:+.1f}%"
