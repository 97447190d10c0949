"""The control-plane API's error bodies: ``{"error": <Reason>, "message": <fixed text>, "detail"?}``.

Library errors are translated here, once, for every ``/v1/*`` handler. A client never sees an
exception's text unless the exception class is known to carry only safe, specific wording
(a CSR defect, a registration field); anything unexpected is a bare 500 ``stage_error``.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from starlette.responses import Response

from garrison.errors import CaError, GarrisonError, JoinTokenError, StoreError, SvidError
from garrison.reasons import Reason

log = logging.getLogger("garrison.control.api")

NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_DETAIL: Final = 300


class ApiError(Exception):
    """An error answer for ``/v1/*``. ``detail`` is shown to the client: it must never hold a secret."""

    def __init__(
        self,
        reason: Reason,
        detail: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.detail = detail[:MAX_DETAIL] if detail else None
        self.status = status or reason.status
        self.headers = headers or {}

    def response(self) -> Response:
        body: dict[str, str] = {"error": self.reason.value, "message": self.reason.message}
        if self.detail:
            body["detail"] = self.detail
        return Response(
            json.dumps(body, separators=(",", ":")).encode(),
            status_code=self.status,
            media_type="application/json",
            headers={**NO_STORE, **self.headers},
        )

    def __repr__(self) -> str:
        return f"<ApiError {self.reason.value} {self.status}>"


def translate(exc: BaseException, *, refusal_status: int | None = None) -> ApiError:
    """Map a library exception to its public answer (``refusal_status`` overrides SvidError's 400).

    JoinTokenError is answered without detail (one public answer, whatever failed), SvidError with
    its text (it names CSR/SVID defects only), store/CA errors with none (their text names files and
    database URLs). Anything else is logged here with its traceback and answered 500.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, JoinTokenError):
        log.info("join token refused: %s", exc)
        return ApiError(Reason.JOIN_TOKEN_INVALID)
    if isinstance(exc, SvidError):
        return ApiError(Reason.SVID_REFUSED, str(exc), status=refusal_status)
    if isinstance(exc, StoreError):
        log.error("store unavailable: %s", exc)
        return ApiError(Reason.STORE_UNAVAILABLE)
    if isinstance(exc, CaError):
        log.error("CA unavailable: %s", exc)
        return ApiError(Reason.CA_UNAVAILABLE)
    if isinstance(exc, GarrisonError):
        log.error("control-plane request failed: %s: %s", type(exc).__name__, exc)
        return ApiError(exc.reason if exc.reason.status < 500 else Reason.STAGE_ERROR)
    log.error("control-plane request failed unexpectedly", exc_info=exc)
    return ApiError(Reason.STAGE_ERROR)


__all__ = ["NO_STORE", "ApiError", "translate"]
