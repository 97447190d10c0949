"""``StoreError`` lives in the one exception tree (``garrison.errors``); re-exported here for ``store/``."""

from garrison.errors import StoreError

__all__ = ["StoreError"]
