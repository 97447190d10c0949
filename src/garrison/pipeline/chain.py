"""Runs an ordered tuple of stages over a request. Fail closed: any error is a deny.

Stages that never await (``Stage.sync``) are plain calls; an async stage's coroutine is driven in
place and, only if it really suspends (a JWKS refetch), the rest of the chain continues as a
coroutine. So ``run_fast`` serves the common request with no coroutine, task or future at all, and
``run`` (awaitable) gives the same verdicts for every request.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from garrison.errors import GarrisonError
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead, Stage
from garrison.pipeline.verdicts import CONTINUE, SKIP, Continue, Deny, Respond, Skip, Verdict
from garrison.reasons import Reason

log = logging.getLogger("garrison.pipeline")

_Step = tuple[Stage, Callable[[RequestContext], Any], bool, int]  # stage, its call, is_async, index


class Pending:
    """A chain stopped at an async stage whose coroutine suspended. ``await finish()`` completes it."""

    __slots__ = ("chain", "coro", "ctx", "index", "yielded")

    def __init__(
        self, chain: Chain, ctx: RequestContext, index: int, coro: Coroutine[Any, Any, Any], yielded: Any
    ) -> None:
        self.chain = chain
        self.ctx = ctx
        self.index = index
        self.coro = coro
        self.yielded = yielded

    async def finish(self) -> Verdict:
        """The chain's verdict, once the suspended stage (and any later one that suspends) is done."""
        pending: Verdict | Pending = self
        while isinstance(pending, Pending):
            chain, ctx, index = pending.chain, pending.ctx, pending.index
            stage = chain.stages[index]
            try:
                verdict = await _resume(pending.coro, pending.yielded)
            except GarrisonError as exc:
                verdict = Deny(exc.reason, stage.name, detail=type(exc).__name__)
            except Exception:  # fail closed
                log.exception("stage %s failed on request %s", stage.name, ctx.request_id)
                verdict = Deny(Reason.STAGE_ERROR, stage.name)
            final = chain._judge(ctx, stage, verdict)
            pending = final if final is not None else chain._run_from(ctx, index + 1)
        return pending

    def close(self) -> None:
        """Abandon the suspended stage (the request went away)."""
        self.coro.close()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Continue a coroutine that suspended outside a task: hand what it yielded to the running task."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # cancellation (or close) goes to the suspended coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class Chain:
    """The stages of one route (or the pre-routing stages), outermost first. Built once per config."""

    __slots__ = ("_response_stages", "_steps", "name", "stages")

    def __init__(self, name: str, stages: tuple[Stage, ...]) -> None:
        self.name = name
        self.stages = stages
        self._steps: tuple[_Step, ...] = tuple(
            (s, s.check, False, i) if s.sync else (s, s.on_request, True, i) for i, s in enumerate(stages)
        )
        self._response_stages = tuple(
            s for s in reversed(stages) if type(s).on_response is not Stage.on_response
        )

    async def run(self, ctx: RequestContext) -> Verdict:
        """Return CONTINUE when every stage let the request pass, else the first enforced Deny/Respond.

        A shadowed stage's Deny is appended to ``ctx.shadow_denials`` and the request goes on.
        """
        verdict = self._run_from(ctx, 0)
        if isinstance(verdict, Pending):
            return await verdict.finish()
        return verdict

    def run_fast(self, ctx: RequestContext) -> Verdict | Pending:
        """``run`` without a coroutine: the verdict, or a ``Pending`` to await when a stage suspended."""
        return self._run_from(ctx, 0)

    def _run_from(self, ctx: RequestContext, start: int) -> Verdict | Pending:
        cont, skip = CONTINUE, SKIP
        for stage, call, is_async, index in self._steps if start == 0 else self._steps[start:]:
            try:
                if is_async:
                    coro = call(ctx)
                    try:
                        yielded = coro.send(None)
                    except StopIteration as stop:
                        verdict = stop.value
                    else:
                        return Pending(self, ctx, index, coro, yielded)
                else:
                    verdict = call(ctx)
            except GarrisonError as exc:
                verdict = Deny(exc.reason, stage.name, detail=type(exc).__name__)
            except Exception:  # fail closed, and tell the operator (never the client)
                log.exception("stage %s failed on request %s", stage.name, ctx.request_id)
                verdict = Deny(Reason.STAGE_ERROR, stage.name)
            if verdict is cont or verdict is skip:
                continue
            final = self._judge(ctx, stage, verdict)
            if final is not None:
                return final
        return cont

    def _judge(self, ctx: RequestContext, stage: Stage, verdict: object) -> Verdict | None:
        """None to go on with the next stage, else the chain's final verdict."""
        if verdict is CONTINUE or verdict is SKIP:
            return None
        if isinstance(verdict, Deny):
            if stage.shadow:
                ctx.shadow_denials.append(verdict)
                return None
            return verdict
        if isinstance(verdict, Respond):
            return verdict
        if isinstance(verdict, Continue | Skip):  # another instance; still a value, not None
            return None
        log.error("stage %s returned a non-verdict %r", stage.name, type(verdict).__name__)
        return Deny(Reason.STAGE_ERROR, stage.name)

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        """Response-side hooks, innermost first. An error here is logged; the response is still sent."""
        for stage in self._response_stages:
            try:
                stage.on_response(ctx, head)
            except Exception:
                log.exception("response hook of %s failed on request %s", stage.name, ctx.request_id)

    def __repr__(self) -> str:
        return f"<Chain {self.name}: {' > '.join(s.name for s in self.stages)}>"


__all__ = ["Chain", "Pending"]
