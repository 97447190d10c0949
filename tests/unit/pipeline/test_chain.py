"""The chain runner fails closed and honours shadow mode (sans-IO, no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from garrison.errors import TokenError
from garrison.pipeline.chain import Chain
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, SKIP, Deny, Respond, Verdict
from garrison.reasons import Reason


def ctx() -> RequestContext:
    return RequestContext(
        method="GET", raw_target=b"/", headers=[], client_addr="127.0.0.1", request_id="r", now=0.0
    )


class Fixed(Stage):
    name: ClassVar[str] = "fixed"

    def __init__(self, result: Any, *, shadow: bool = False) -> None:
        super().__init__(shadow=shadow)
        self.result = result
        self.calls = 0

    async def on_request(self, ctx: RequestContext) -> Verdict:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result  # type: ignore[no-any-return]


def run(chain: Chain, c: RequestContext | None = None) -> Verdict:
    return asyncio.run(chain.run(c or ctx()))


def test_all_continue_is_continue() -> None:
    assert run(Chain("t", (Fixed(CONTINUE), Fixed(SKIP), Fixed(CONTINUE)))) is CONTINUE


def test_first_deny_stops_the_chain() -> None:
    later = Fixed(CONTINUE)
    v = run(Chain("t", (Fixed(Deny(Reason.POLICY_DENY, "authz")), later)))
    assert isinstance(v, Deny) and v.reason is Reason.POLICY_DENY
    assert later.calls == 0


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        pytest.param(None, Reason.STAGE_ERROR, id="none-is-not-a-verdict"),
        pytest.param(True, Reason.STAGE_ERROR, id="truthy-is-not-an-allow"),
        pytest.param(RuntimeError("boom"), Reason.STAGE_ERROR, id="exception-denies"),
        pytest.param(
            TokenError("bad", Reason.TOKEN_EXPIRED), Reason.TOKEN_EXPIRED, id="garrison-error-keeps-reason"
        ),
    ],
)
def test_errors_and_non_verdicts_fail_closed(result: Any, reason: Reason) -> None:
    after = Fixed(CONTINUE)
    v = run(Chain("t", (Fixed(result), after)))
    assert isinstance(v, Deny) and v.reason is reason
    assert after.calls == 0


def test_shadow_deny_is_recorded_and_request_continues() -> None:
    c = ctx()
    deny = Deny(Reason.POLICY_NO_MATCH, "authz")
    v = run(Chain("t", (Fixed(deny, shadow=True), Fixed(CONTINUE))), c)
    assert v is CONTINUE
    assert c.shadow_denials == [deny]


def test_shadow_does_not_hide_a_stage_error_from_records() -> None:
    c = ctx()
    assert run(Chain("t", (Fixed(RuntimeError("x"), shadow=True),)), c) is CONTINUE
    assert [d.reason for d in c.shadow_denials] == [Reason.STAGE_ERROR]


def test_respond_ends_the_chain() -> None:
    r = Respond(204)
    assert run(Chain("t", (Fixed(r), Fixed(Deny(Reason.POLICY_DENY, "x"))))) is r


def test_repr_names_stages() -> None:
    assert repr(Chain("r1", (Fixed(CONTINUE),))) == "<Chain r1: fixed>"
