"""The unit of extension: one stage, one job (STYLE §2). Built once at config load, run per request."""

from __future__ import annotations

from typing import ClassVar

from mypy_extensions import mypyc_attr

from garrison.pipeline.context import RequestContext
from garrison.pipeline.verdicts import Verdict


class ResponseHead:
    """The upstream's (or a local) response status and headers, mutable by response-side stages.

    ``raw`` holds header lines a stage adds already rendered (``b"name: value\r\n"`` each, from
    constants built at load): they are sent after ``headers`` and are not in it.
    """

    __slots__ = ("headers", "raw", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers
        self.raw = b""


# Compiled by mypyc in a regular install (setup.py): stages outside the compiled set, and tests,
# subclass it, which a compiled class allows only when marked so.
@mypyc_attr(allow_interpreted_subclasses=True)
class Stage:
    """Base class of every pipeline stage.

    ``on_request`` returns a Verdict; the chain runner turns an exception or a non-Verdict into a
    ``Deny(STAGE_ERROR)``. ``shadow`` (per route) makes a Deny be recorded and counted, not enforced.

    A stage that never awaits sets ``sync = True`` and implements ``check`` (a plain method): the chain
    calls it directly, with no coroutine per request. ``on_request`` then just returns ``check(ctx)``.
    """

    name: ClassVar[str] = "stage"
    enforcing: ClassVar[bool] = True  # may be put in shadow mode
    sync: ClassVar[bool] = False  # True: ``check`` is the stage, called without awaiting

    __slots__ = ("shadow",)

    def __init__(self, *, shadow: bool = False) -> None:
        self.shadow = shadow

    def check(self, ctx: RequestContext) -> Verdict:
        """The synchronous form of ``on_request`` (only for ``sync`` stages)."""
        raise NotImplementedError

    async def on_request(self, ctx: RequestContext) -> Verdict:
        if self.sync:
            return self.check(ctx)
        raise NotImplementedError

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        """Adjust the response head before it is sent. No I/O, no awaiting."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{' shadow' if self.shadow else ''}>"


__all__ = ["ResponseHead", "Stage"]
