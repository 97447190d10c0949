"""The synchronous chain runner (``run_fast``) and its hand-over to a coroutine when a stage suspends."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from garrison.pipeline.chain import Chain, Pending
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.reasons import Reason


def ctx() -> RequestContext:
    return RequestContext(
        method="GET", raw_target=b"/", headers=[], client_addr="127.0.0.1", request_id="r", now=0.0
    )


class SyncStage(Stage):
    name: ClassVar[str] = "sync"
    sync: ClassVar[bool] = True

    def __init__(self, result: object, *, shadow: bool = False) -> None:
        super().__init__(shadow=shadow)
        self.result = result
        self.calls = 0

    def check(self, ctx: RequestContext) -> Verdict:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result  # type: ignore[return-value]


class Waits(Stage):
    """An async stage that really suspends (like authn on a JWKS refetch)."""

    name: ClassVar[str] = "waits"

    def __init__(self, result: Verdict | BaseException, *, shadow: bool = False) -> None:
        super().__init__(shadow=shadow)
        self.result = result

    async def on_request(self, ctx: RequestContext) -> Verdict:
        await asyncio.sleep(0.001)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def test_sync_stages_need_no_coroutine() -> None:
    a, b = SyncStage(CONTINUE), SyncStage(CONTINUE)
    assert Chain("t", (a, b)).run_fast(ctx()) is CONTINUE
    assert a.calls == b.calls == 1


def test_sync_stage_errors_fail_closed() -> None:
    later = SyncStage(CONTINUE)
    v = Chain("t", (SyncStage(RuntimeError("boom")), later)).run_fast(ctx())
    assert isinstance(v, Deny) and v.reason is Reason.STAGE_ERROR and v.stage == "sync"
    assert later.calls == 0
    v = Chain("t", (SyncStage(None),)).run_fast(ctx())  # None is not a verdict
    assert isinstance(v, Deny) and v.reason is Reason.STAGE_ERROR


def test_a_suspending_stage_hands_over_and_the_rest_of_the_chain_runs() -> None:
    after = SyncStage(CONTINUE)
    chain = Chain("t", (SyncStage(CONTINUE), Waits(CONTINUE), after))

    async def main() -> Verdict:
        pending = chain.run_fast(ctx())  # as the server calls it: from a loop callback
        assert isinstance(pending, Pending) and after.calls == 0
        return await pending.finish()

    assert asyncio.run(main()) is CONTINUE
    assert after.calls == 1
    assert asyncio.run(chain.run(ctx())) is CONTINUE  # the awaitable form agrees


def test_a_suspended_stage_still_fails_closed_and_honours_shadow() -> None:
    after = SyncStage(Deny(Reason.POLICY_DENY, "authz"))
    v = asyncio.run(Chain("t", (Waits(RuntimeError("x")), after)).run(ctx()))
    assert isinstance(v, Deny) and v.reason is Reason.STAGE_ERROR and v.stage == "waits"
    assert after.calls == 0
    c = ctx()
    v = asyncio.run(Chain("t", (Waits(Deny(Reason.AUTHN_REQUIRED, "waits"), shadow=True), after)).run(c))
    assert isinstance(v, Deny) and v.reason is Reason.POLICY_DENY  # the shadowed deny did not stop it
    assert [d.reason for d in c.shadow_denials] == [Reason.AUTHN_REQUIRED]


def test_a_suspended_stage_is_cancelled_with_its_task() -> None:
    async def main() -> bool:
        pending = Chain("t", (Waits(CONTINUE),)).run_fast(ctx())
        assert isinstance(pending, Pending)
        task = asyncio.get_running_loop().create_task(pending.finish())
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
