"""The CA's errors live in the one exception tree (``garrison.errors``); re-exported here for ``ca/``."""

from garrison.errors import CaError, JoinTokenError, SealError, SvidError

__all__ = ["CaError", "JoinTokenError", "SealError", "SvidError"]
