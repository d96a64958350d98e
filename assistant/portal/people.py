"""The People pages of the portal: users, groups, who is in which, and what each may read.

For superusers and staff granted "Can change user" (``accounts.selectors.
user_can_manage_people``); everyone else gets the 403 page. Every change goes through
``accounts.services`` (the same path as ``manage.py user add``), which checks the rule
again and audits it; what a user may read comes from ``accounts.selectors``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from assistant.accounts import services
from assistant.accounts.selectors import user_can_manage_people, user_read_overview, users_search
from assistant.directory.selectors import group_origins, user_origins

PAGE_SIZE = 50


class UserCreateForm(forms.Form):
    username = forms.CharField(label=gettext_lazy("User name"), max_length=150)
    email = forms.EmailField(label=gettext_lazy("E-mail"), required=False)
    password = forms.CharField(
        label=gettext_lazy("Initial password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Empty: they cannot sign in with a password until one is set."),
    )
    groups = forms.ModelMultipleChoiceField(
        label=gettext_lazy("Groups"), queryset=Group.objects.order_by("name"), required=False
    )


class GroupNameForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Group name"), max_length=150)


def people_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_can_manage_people(request.user):
            raise PermissionDenied(_("Only administrators of users and groups may open this page."))
        return view(request, *args, **kwargs)

    return wrapped


def _back(request: HttpRequest, fallback: str, *args: Any) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(fallback, *args)


def _number(value: Any) -> int:
    text = str(value or "")
    return int(text) if text.isdigit() else 0


def _user(user_id: Any) -> Any:
    return get_object_or_404(get_user_model(), pk=_number(user_id))


def _group(group_id: Any) -> Group:
    return get_object_or_404(Group, pk=_number(group_id))


@people_required
def users(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")[:150]
    page = Paginator(users_search(search=search), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/people/users.html",
        {"page": page, "search": search, "form": UserCreateForm(), "group_count": Group.objects.count()}
        | _with_origins(page),
    )


def _with_origins(page: Any) -> dict[str, Any]:
    people = list(page.object_list)
    origins = user_origins(people)
    return {"people": [(person, origins[person.pk]) for person in people]}


@people_required
@require_POST
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            done = services.user_add(
                username=data["username"],
                email=data["email"],
                password=data["password"],
                groups=[g.name for g in data["groups"]],
                actor=request.user,
                existing_ok=False,
            )
        except ValidationError as exc:
            form.add_error("password", exc)
        except ValueError as exc:  # UserExists, an empty name
            form.add_error("username", str(exc))
        else:
            messages.success(request, _("Created user “%(name)s”.") % {"name": done.user.username})
            return redirect("portal:people_user", user_id=done.user.pk)
    page = Paginator(users_search(), PAGE_SIZE).get_page(1)
    context = {"page": page, "search": "", "form": form, "group_count": Group.objects.count()} | _with_origins(page)
    return render(request, "portal/people/users.html", context, status=400)


@people_required
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    person = _user(user_id)
    member_of = person.groups.order_by("name")
    return render(
        request,
        "portal/people/user.html",
        {
            "person": person,
            "member_of": member_of,
            "other_groups": Group.objects.exclude(pk__in=member_of.values("pk")).order_by("name"),
            "overview": user_read_overview(user=person, viewer=request.user),
            "is_self": person.pk == request.user.pk,
            "origin": user_origins([person])[person.pk],
        },
    )


@people_required
@require_POST
def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    person = _user(user_id)
    active = request.POST.get("active") == "1"
    try:
        services.user_set_active(user=person, active=active, actor=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        text = _("“%(name)s” can sign in again.") if active else _("“%(name)s” is deactivated and cannot sign in.")
        messages.success(request, text % {"name": person.username})
    return redirect("portal:people_user", user_id=person.pk)


@people_required
@require_POST
def member_add(request: HttpRequest) -> HttpResponse:
    group = _group(request.POST.get("group"))
    username = request.POST.get("username", "").strip()
    users = get_user_model().objects
    person = (
        users.filter(username=username).first()
        if username
        else users.filter(pk=_number(request.POST.get("user"))).first()
    )
    if person is None:
        messages.error(request, _("No user named “%(name)s”.") % {"name": username})
        return _back(request, "portal:people_group", group.pk)
    if services.group_member_add(group=group, user=person, actor=request.user):
        text = _("Added “%(user)s” to “%(group)s”.")
        messages.success(request, text % {"user": person.username, "group": group.name})
    return _back(request, "portal:people_group", group.pk)


@people_required
@require_POST
def member_remove(request: HttpRequest) -> HttpResponse:
    group = _group(request.POST.get("group"))
    person = _user(request.POST.get("user"))
    if services.group_member_remove(group=group, user=person, actor=request.user):
        text = _("Removed “%(user)s” from “%(group)s”.")
        messages.success(request, text % {"user": person.username, "group": group.name})
    return _back(request, "portal:people_group", group.pk)


@people_required
def groups(request: HttpRequest) -> HttpResponse:
    form = GroupNameForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            group = services.group_create(name=form.cleaned_data["name"], actor=request.user)
        except ValueError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, _("Created group “%(name)s”.") % {"name": group.name})
            return redirect("portal:people_group", group_id=group.pk)
    listed = Group.objects.annotate(
        members=Count("user", distinct=True),
        grants=Count("collection_grants", distinct=True),
        restricting=Count("restricted_documents", distinct=True),
    ).order_by("name")
    listed_groups = list(listed)
    origins = group_origins(listed_groups)
    rows = [(group, origins[group.pk]) for group in listed_groups]
    return render(request, "portal/people/groups.html", {"groups": rows, "form": form})


@people_required
def group_detail(request: HttpRequest, group_id: int) -> HttpResponse:
    group = _group(group_id)
    form = GroupNameForm(request.POST or None, initial={"name": group.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.group_rename(group=group, name=form.cleaned_data["name"], actor=request.user)
        except ValueError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, _("The group is now called “%(name)s”.") % {"name": group.name})
            return redirect("portal:people_group", group_id=group.pk)
    return render(request, "portal/people/group.html", _group_context(group) | {"form": form})


def _group_context(group: Group) -> dict[str, Any]:
    return {
        "group": group,
        "members": group.user_set.order_by("username"),
        "grants": group.collection_grants.select_related("collection").order_by("collection__name"),
        "restricting": group.restricted_documents.count(),
        "origin": group_origins([group])[group.pk],
    }


@people_required
def group_delete(request: HttpRequest, group_id: int) -> HttpResponse:
    """A confirmation page (GET) that says what deleting takes away, then the deletion (POST)."""
    group = _group(group_id)
    if request.method == "POST":
        try:
            services.group_delete(group=group, actor=request.user)
        except services.GroupInUse as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Deleted group “%(name)s”.") % {"name": group.name})
            return redirect("portal:people_groups")
    return render(request, "portal/people/group_delete.html", _group_context(group))
