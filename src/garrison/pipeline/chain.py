"""Runs an ordered tuple of stages over a request. Fail closed: any error is a deny."""

from __future__ import annotations

import logging

from garrison.errors import GarrisonError
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead, Stage
from garrison.pipeline.verdicts import CONTINUE, SKIP, Continue, Deny, Respond, Skip, Verdict
from garrison.reasons import Reason

log = logging.getLogger("garrison.pipeline")


class Chain:
    """The stages of one route (or the pre-routing stages), outermost first. Built once per config."""

    __slots__ = ("_response_stages", "name", "stages")

    def __init__(self, name: str, stages: tuple[Stage, ...]) -> None:
        self.name = name
        self.stages = stages
        self._response_stages = tuple(
            s for s in reversed(stages) if type(s).on_response is not Stage.on_response
        )

    async def run(self, ctx: RequestContext) -> Verdict:
        """Return CONTINUE when every stage let the request pass, else the first enforced Deny/Respond.

        A shadowed stage's Deny is appended to ``ctx.shadow_denials`` and the request goes on.
        """
        for stage in self.stages:
            try:
                verdict = await stage.on_request(ctx)
            except GarrisonError as exc:
                verdict = Deny(exc.reason, stage.name, detail=type(exc).__name__)
            except Exception:  # fail closed, and tell the operator (never the client)
                log.exception("stage %s failed on request %s", stage.name, ctx.request_id)
                verdict = Deny(Reason.STAGE_ERROR, stage.name)
            if verdict is CONTINUE or verdict is SKIP:
                continue
            if isinstance(verdict, Deny):
                if stage.shadow:
                    ctx.shadow_denials.append(verdict)
                    continue
                return verdict
            if isinstance(verdict, Respond):
                return verdict
            if isinstance(verdict, Continue | Skip):  # another instance; still a value, not None
                continue
            log.error("stage %s returned a non-verdict %r", stage.name, type(verdict).__name__)
            return Deny(Reason.STAGE_ERROR, stage.name)
        return CONTINUE

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        """Response-side hooks, innermost first. An error here is logged; the response is still sent."""
        for stage in self._response_stages:
            try:
                stage.on_response(ctx, head)
            except Exception:
                log.exception("response hook of %s failed on request %s", stage.name, ctx.request_id)

    def __repr__(self) -> str:
        return f"<Chain {self.name}: {' > '.join(s.name for s in self.stages)}>"


__all__ = ["Chain"]
