"""Errors a prediction chain raises on a request it cannot score as training would."""


class StaleChainError(ValueError):
    """The fitted objects do not fit together (e.g. models fitted on other features)."""


class ChainInputError(ValueError):
    """The request cannot be scored: no training ticker, or too little history."""
