"""A request body in flight from the client parser to the upstream writer, with back-pressure."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from garrison.errors import HttpError
from garrison.reasons import Reason

HIGH_WATER = 256 * 1024  # pause reading from the client above this many buffered bytes
LOW_WATER = 64 * 1024


class BodyStream:
    """Chunks fed by the parser callbacks and read by the handler task. Bounded in total and in buffer."""

    __slots__ = ("_buffered", "_chunks", "_error", "_waiter", "complete", "on_drain", "received")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: HttpError | None = None
        self.complete = False
        self.received = 0
        self.on_drain: Callable[[], None] | None = None

    def feed(self, data: bytes, limit: int) -> bool:
        """Buffer a chunk; returns True when the caller should stop reading from the client."""
        self.received += len(data)
        if self.received > limit:
            self.fail(HttpError(reason=Reason.BODY_TOO_LARGE))
            return True
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()
        return self._buffered > HIGH_WATER

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: HttpError) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def abort(self) -> None:
        self.fail(HttpError("client went away", Reason.BAD_REQUEST))

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end of the body. Raises the HttpError that broke the body."""
        while True:
            if self._error is not None:
                raise self._error
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < LOW_WATER and self.on_drain is not None:
                    self.on_drain()
                return chunk
            if self.complete:
                return None
            if self.on_drain is not None:
                self.on_drain()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


__all__ = ["HIGH_WATER", "BodyStream"]
