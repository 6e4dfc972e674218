"""The errors of ``/v1``: one JSON shape, :class:`ErrorBody`, for every one of them.

``{"error": "<stable id>", "message": "<text>", "details": {...} | [...] | null}``.
:func:`api_error_of` maps what :class:`~salara.control.CallControl` and the
AMI client raise to HTTP: 404 no such call/extension/endpoint/channel; 409
the request clashes with the state of things; 422 a request that does not
validate (details: one entry per problem); 503 AMI not connected; 502
Asterisk refused an action; 504 Asterisk did not answer in time.
:func:`install_error_handlers` answers them, and FastAPI's own validation
and HTTP errors, in that shape (outside ``/v1``: the compat shape). The
``*_ERRORS``/``NOT_FOUND``/``CONFLICT`` mappings document them in OpenAPI.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from salara.errors import (
    AMIActionError,
    AMIError,
    AMIUnavailable,
    LocalProtocolError,
    NotFound,
    RequestError,
    Unprocessable,
)


class ErrorBody(BaseModel):
    """Every error of ``/v1``."""

    error: str = Field(description="A stable id, e.g. `call_not_found`, `operator_unavailable`, `ami_unavailable`.")
    message: str = Field(description="What went wrong, for people.")
    details: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="More about it: the fields that did not validate (422), Asterisk's own words..."
    )


class ApiError(Exception):
    """An error answer of ``/v1`` in the :class:`ErrorBody` shape."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: dict[str, Any] | list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": self.error, "message": self.message, "details": self.details}
        return JSONResponse(body, self.status, headers=self.headers)


def api_error_of(exc: Exception) -> ApiError:
    """The HTTP answer to an error raised by :class:`CallControl` or the AMI client."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, exc.error, exc.message, exc.details or None)
    if isinstance(exc, Unprocessable):
        return ApiError(422, exc.error, exc.message, exc.details or None)
    if isinstance(exc, RequestError):
        return ApiError(409, exc.error, exc.message, exc.details or None)
    if isinstance(exc, AMIUnavailable):
        return ApiError(503, "ami_unavailable", f"Asterisk (AMI) is not connected: {exc}")
    if isinstance(exc, AMIActionError):
        return ApiError(
            502,
            "asterisk_refused",
            f"Asterisk refused {exc.action}: {exc.message}",
            {"action": exc.action, "asterisk": exc.message},
        )
    if isinstance(exc, AMIError):
        return ApiError(504, "asterisk_timeout", str(exc))
    if isinstance(exc, LocalProtocolError):
        return ApiError(422, "validation_failed", str(exc))
    raise TypeError(f"not an API error: {exc!r}")


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as plain JSON: where (``loc``), what (``msg``), which rule (``type``)."""
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]


class V1Route(APIRoute):
    """A route of ``/v1``: its validation errors answer in the :class:`ErrorBody` shape."""


def install_error_handlers(app: FastAPI) -> None:
    """Answer ``/v1`` errors (and its validation errors) in the :class:`ErrorBody` shape."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        return api_error_of(exc).response()

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not isinstance(request.scope.get("route"), V1Route):
            return await request_validation_exception_handler(request, exc)
        details = validation_details(exc)
        where = ", ".join(".".join(str(part) for part in d["loc"]) + ": " + d["msg"] for d in details[:5])
        return ApiError(422, "validation_failed", f"invalid request: {where}", details).response()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not isinstance(request.scope.get("route"), V1Route):
            # Outside /v1 a client speaks the compat API: answer in its shape.
            headers = dict(exc.headers) if exc.headers else None
            return JSONResponse({"result": -2, "text": f"Error: {exc.detail}"}, exc.status_code, headers)
        if exc.status_code == 400:  # FastAPI could not read the body at all (not UTF-8, not JSON)
            return ApiError(422, "validation_failed", f"invalid request: {exc.detail}").response()
        headers = dict(exc.headers) if exc.headers else None
        return ApiError(exc.status_code, "error", str(exc.detail), headers=headers).response()

    for kind in (ApiError, RequestError, AMIError, LocalProtocolError):
        app.add_exception_handler(kind, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def error_response(description: str) -> dict[str, Any]:
    """An entry of a route's ``responses``: answered with an :class:`ErrorBody`, described so."""
    return {"model": ErrorBody, "description": description}


COMMON_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    422: error_response("The request does not validate (details: one entry per problem)."),
}
AMI_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    502: error_response("Asterisk refused the action."),
    503: error_response("Asterisk (AMI) is not connected; nothing was sent."),
    504: error_response("Asterisk did not answer in time."),
}
NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: error_response("No such resource.")}
CONFLICT: Final[dict[int | str, dict[str, Any]]] = {
    409: error_response("The request clashes with the state of things.")
}
