"""Who may read the operator endpoints' details: ``/metrics``, and ``/readyz``'s reasons.

Allowed: a client address inside ``METRICS_ALLOWED_NETWORKS`` (loopback by default),
or a request carrying ``Authorization: Bearer <METRICS_TOKEN>`` when a token is set.
The address is the one the audit log records (``client_ip``: behind
``DJANGO_PROXY_COUNT`` proxies, the client's, not the proxy's).
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest

from assistant.audit.services import client_ip


def _token_matches(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def operator_request(request: HttpRequest) -> bool:
    if _token_matches(request):
        return True
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS)
