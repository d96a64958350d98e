"""``/readyz`` and ``/metrics``: open to probes without a sign-in, like ``/healthz``."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from assistant.ops import readiness
from assistant.ops.access import operator_request

logger = logging.getLogger(__name__)


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every part answers, else 503 naming the failing parts.

    A ``degraded`` part (a read replica that does not answer) is named but keeps the 200:
    the instance works without it.

    Each part's state is public (a load balancer or compose asks from anywhere); the
    reasons (addresses, error messages) only go to operators (``access``) and the log.
    """
    checks = readiness.readiness()
    failing = [c.name for c in checks if not c.ok]
    detailed = operator_request(request)
    parts = {}
    for check in checks:
        status = ("degraded" if check.degraded else "ok") if check.ok else "failing"
        part: dict[str, object] = {"status": status, "seconds": check.seconds}
        if detailed:
            part["detail"] = check.detail
        parts[check.name] = part
        if not check.ok or check.degraded:
            logger.warning("readyz: %s is %s: %s", check.name, status, check.detail, extra={"part": check.name})
    body: dict[str, object] = {"status": "failing" if failing else "ok", "failing": failing, "checks": parts}
    degraded = [c.name for c in checks if c.degraded]
    if degraded:
        body["degraded"] = degraded
    return JsonResponse(body, status=503 if failing else 200)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format; not found unless ``METRICS_ENABLED``, refused unless ``access`` allows."""
    if not settings.METRICS_ENABLED:
        raise Http404
    if not operator_request(request):
        return HttpResponse("Forbidden.\n", status=403, content_type="text/plain; charset=utf-8")
    from assistant.ops.exposition import render

    body, content_type = render(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
