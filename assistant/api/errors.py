"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Codes are stable and documented in docs/api.md; messages are for people.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

logger = logging.getLogger(__name__)

CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "validation_error",
    429: "throttled",
}


class ApiError(HttpError):
    """Raised by routers: answered as JSON with this status, code and message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(status, message)
        self.code = code
        self.extra = extra


def not_found(what: str = "resource") -> ApiError:
    # Also what a caller gets for things that exist but are not theirs to see.
    return ApiError(404, "not_found", f"No such {what}.")


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _plain(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # pydantic's error context may hold exception objects: keep what serialises.
    return [
        {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


def install_handlers(api: NinjaAPI) -> None:
    def respond(request: HttpRequest, status: int, body: dict[str, Any]) -> HttpResponse:
        response = api.create_response(request, body, status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response

    @api.exception_handler(ApiError)
    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return respond(request, exc.status_code, error_body(exc.code, exc.message, **exc.extra))

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = (
            "A valid API token is required: send 'Authorization: Bearer <token>' (expired or revoked tokens fail)."
        )
        return respond(request, 401, error_body("unauthenticated", message))

    @api.exception_handler(ValidationError)
    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        details = _plain(exc.errors)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path", "form"))
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        return respond(request, 422, error_body("validation_error", message, details=details))

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        code = CODE_FOR_STATUS.get(exc.status_code, "error")
        return respond(request, exc.status_code, error_body(code, str(exc)))

    @api.exception_handler(Http404)
    def missing(request: HttpRequest, exc: Http404) -> HttpResponse:
        return respond(request, 404, error_body("not_found", "No such resource."))

    @api.exception_handler(RequestDataTooBig)
    def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = f"The request body is larger than the limit of {limit} bytes (files are sent as multipart uploads)."
        return respond(request, 413, error_body("request_too_large", message, limit_bytes=limit))

    @api.exception_handler(SuspiciousOperation)
    def suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
        # Django's own request limits (too many fields or files, a malformed upload).
        return respond(request, 400, error_body("bad_request", str(exc) or "The request is malformed."))

    @api.exception_handler(MultiPartParserError)
    def malformed_upload(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
        message = f"The multipart body could not be read: {exc}. Send files as multipart/form-data."
        return respond(request, 400, error_body("bad_request", message))

    @api.exception_handler(Exception)
    def internal(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("API request %s %s failed", request.method, request.path)
        return respond(request, 500, error_body("internal_error", "The server failed; the error has been logged."))


def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/v1/: JSON, not an HTML page."""
    return JsonResponse(error_body("not_found", "No such endpoint or resource."), status=404)
