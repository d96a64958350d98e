"""The user's own account pages: personal API tokens."""

from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.validators import MaxValueValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from assistant.accounts.models import ApiToken
from assistant.accounts.services import TokenRequestInvalid, token_create, token_revoke


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)
    days = forms.IntegerField(min_value=1)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # The limit is a setting, read per form so that a changed setting applies.
        days = self.fields["days"]
        days.validators.append(MaxValueValidator(settings.API_TOKEN_MAX_DAYS))
        days.initial = settings.API_TOKEN_DEFAULT_DAYS
        days.widget.attrs["max"] = settings.API_TOKEN_MAX_DAYS


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    plaintext = ""
    if request.method == "POST" and form.is_valid():
        try:
            issued = token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                days=form.cleaned_data["days"],
            )
        except TokenRequestInvalid as exc:
            form.add_error(None, str(exc))
        else:
            # Rendered, not redirected: the page that shows the secret is never reloaded
            # from history with it, and the secret is never stored to be shown again.
            plaintext = issued.plaintext
            form = TokenForm()
    listed = ApiToken.objects.filter(user=cast(User, request.user))  # login_required: never anonymous
    response = render(request, "accounts/tokens.html", {"form": form, "tokens": listed, "plaintext": plaintext})
    if plaintext:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    # Another user's token id is simply not found.
    token = get_object_or_404(ApiToken, pk=token_id, user=cast(User, request.user))
    token_revoke(token=token)
    messages.success(request, f"Revoked “{token.name}”.")
    return redirect("accounts:tokens")
