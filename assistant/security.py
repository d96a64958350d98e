"""Response headers that limit what a page may do once it is in a browser.

The Content-Security-Policy is the second wall behind template escaping: should
some user text ever reach a page unescaped, the browser still refuses to run
script or load anything that is not a file of this product (no inline script, no
``eval``, no outside origin). Every page therefore keeps its script and style in
static files; the policy is ``settings.CONTENT_SECURITY_POLICY``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.deprecation import MiddlewareMixin


class SecurityHeadersMiddleware(MiddlewareMixin):
    """Adds the policy headers to every response (pages, API, static files, errors).

    A header a view set itself is left alone, so one response can be stricter.
    Works for sync and async requests alike (``MiddlewareMixin``).
    """

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        headers = {
            "Content-Security-Policy": settings.CONTENT_SECURITY_POLICY,
            "Permissions-Policy": settings.PERMISSIONS_POLICY,
            # Other sites cannot embed our files (images, scripts, downloads) in theirs.
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        for name, value in headers.items():
            if value and name not in response.headers:
                response.headers[name] = value
        return response
