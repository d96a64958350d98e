"""Admin pages of the audit log: browse, export, the data boundary, deleting a user.

Views validate, check the user's role (auditor for the log, see
``assistant.audit.auditors``; administrator for the rest), call one service or
selector and respond.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from assistant.audit import boundary, services
from assistant.audit.auditors import user_is_auditor
from assistant.audit.models import AuditEvent
from assistant.audit.selectors import AuditFilter, audit_events

PAGE_SIZE = 50


def _require_admin(request: HttpRequest, *, superuser: bool = False) -> None:
    user = request.user
    allowed = user.is_active and (user.is_superuser or (not superuser and user.is_staff))
    if not allowed:
        raise PermissionDenied


def _require_auditor(request: HttpRequest) -> None:
    # Not is_staff: the log shows every user's questions and restricted documents' names.
    if not user_is_auditor(request.user):
        raise PermissionDenied


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        label=gettext_lazy("Action"),
        choices=[("", gettext_lazy("All actions")), *AuditEvent.Action.choices],
        required=False,
    )
    user = forms.CharField(required=False, max_length=150, label=gettext_lazy("User name"))
    collection = forms.CharField(
        required=False,
        max_length=200,
        label=gettext_lazy("Collection"),
        help_text=gettext_lazy("A collection's name or id"),
    )
    since = forms.DateField(required=False, label=gettext_lazy("From"), widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label=gettext_lazy("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError(gettext("The start date is after the end date."))
        return data

    def to_filter(self) -> AuditFilter:
        data = self.cleaned_data
        return AuditFilter(
            actions=(data["action"],) if data.get("action") else (),
            username=data.get("user") or "",
            collection=data.get("collection") or "",
            since=data.get("since"),
            until=data.get("until"),
        )


@login_required
def log(request: HttpRequest) -> HttpResponse:
    _require_auditor(request)
    form = AuditFilterForm(request.GET or None)
    page = None
    if form.is_valid() or not request.GET:
        filters = form.to_filter() if form.is_bound else None
        page = Paginator(audit_events(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    return _log_page(request, form=form, page=page)


def _log_page(request: HttpRequest, *, form: AuditFilterForm, page: Any, status: int = 200) -> HttpResponse:
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "retention_days": settings.AUDIT_RETENTION_DAYS}
    return render(request, "portal/audit_log.html", context, status=status)


@login_required
def export(request: HttpRequest, fmt: str) -> HttpResponse | StreamingHttpResponse:
    _require_auditor(request)
    if fmt not in services.EXPORT_FORMATS:
        return HttpResponseBadRequest("Export as csv or jsonl.", content_type="text/plain; charset=utf-8")
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        # The log page with the filter's errors, escaped by the template like every
        # value there: the errors quote what was sent, which a crafted link controls.
        return _log_page(request, form=form, page=None, status=400)
    filters = form.to_filter()
    # Recorded before the first byte leaves: an export cut off half-way still happened.
    services.audit_record(
        action=AuditEvent.Action.AUDIT_EXPORTED, details={"format": fmt, "filters": filters.as_dict()}, request=request
    )
    events = audit_events(filters=filters)
    if isinstance(request, ASGIRequest):
        lines: Any = services.audit_export_lines_async(queryset=events, fmt=fmt)
    else:
        lines = services.audit_export_lines(queryset=events, fmt=fmt)
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
    response = StreamingHttpResponse(lines, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response


@login_required
def data_boundary(request: HttpRequest) -> HttpResponse:
    # What leaves the machine, without any user's data: for administrators and auditors.
    if not user_is_auditor(request.user):
        _require_admin(request)
    return render(
        request,
        "portal/data_boundary.html",
        {
            "endpoints": boundary.endpoints(),
            "local_models": boundary.local_models(),
            "switches": sorted(boundary.telemetry_switches().items()),
        },
    )


class UserDeleteForm(forms.Form):
    username = forms.CharField(max_length=150, label=gettext_lazy("User name"))
    confirm = forms.CharField(max_length=150, label=gettext_lazy("Type the user name again to confirm"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("username") and data.get("confirm") != data.get("username"):
            raise forms.ValidationError(gettext("The two user names differ."))
        if data.get("username"):
            user = get_user_model().objects.filter(username=data["username"]).first()
            if user is None:
                raise forms.ValidationError(gettext("There is no user with this name."))
            data["user"] = user
        return data


@login_required
def user_delete(request: HttpRequest) -> HttpResponse:
    """Delete a user and their data under ``USER_DELETION_POLICY`` (superusers only)."""
    _require_admin(request, superuser=True)
    form = UserDeleteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            summary = services.user_data_delete(user=form.cleaned_data["user"], actor=request.user, request=request)
        except services.UserDeletionRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                gettext(
                    "Deleted user %(user)s: %(conversations)s conversations, %(messages)s messages; "
                    "audit entries: %(policy)s."
                )
                % {"user": form.cleaned_data["username"], **summary},
            )
            return redirect("audit:log")
    return render(request, "portal/user_delete.html", {"form": form, "policy": settings.USER_DELETION_POLICY})
