"""The user's own account pages: personal API tokens and their settings (the interface language)."""

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
from django.utils import translation
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST

from assistant.accounts.language import language_of, language_set, languages
from assistant.accounts.models import ApiToken
from assistant.accounts.services import TokenRequestInvalid, token_create, token_revoke


class TokenForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    scope = forms.ChoiceField(label=gettext_lazy("Scope"), choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)
    days = forms.IntegerField(label=gettext_lazy("Valid for (days)"), min_value=1)

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
    messages.success(request, gettext("Revoked “%(name)s”.") % {"name": token.name})
    return redirect("accounts:tokens")


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=gettext_lazy("Language"), required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        choices = [("", gettext_lazy("As my browser asks")), *languages()]
        cast(forms.ChoiceField, self.fields["language"]).choices = choices


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    """The user's settings: the interface language, stored so it follows them to any browser."""
    form = LanguageForm(request.POST or None, initial={"language": language_of(user=request.user)})
    if request.method == "POST" and form.is_valid():
        language = form.cleaned_data["language"]
        language_set(user=request.user, language=language)
        shown = language or translation.get_language_from_request(request)
        translation.activate(shown)
        messages.success(request, gettext("Settings saved."))
        response = redirect("accounts:settings")
        # The sign-in page after signing out speaks the same language in this browser.
        if language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        else:
            response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
        return response
    return render(request, "accounts/settings.html", {"form": form})
