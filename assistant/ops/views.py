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

    Each part's state is public (a load balancer or compose asks from anywhere); the
    reasons (addresses, error messages) only go to operators (``access``) and the log.
    """
    checks = readiness.readiness()
    failing = [c.name for c in checks if not c.ok]
    detailed = operator_request(request)
    parts = {}
    for check in checks:
        part: dict[str, object] = {"status": "ok" if check.ok else "failing", "seconds": check.seconds}
        if detailed:
            part["detail"] = check.detail
        parts[check.name] = part
        if not check.ok:
            logger.warning("readyz: %s is failing: %s", check.name, check.detail, extra={"part": check.name})
    body = {"status": "failing" if failing else "ok", "failing": failing, "checks": parts}
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
