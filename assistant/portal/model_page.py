"""The model page: what each LLM server reports, the models in use, and their recorded licences.

Superusers only: it shows the model servers' addresses and records licences. Every
LLM server is asked live on every visit (``catalog.selectors.llm_server_reports``); a
server that is down is said so, the rest of the page still works.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from assistant.catalog.models import ModelKind
from assistant.catalog.selectors import llm_server_reports, model_in_use, models_in_use
from assistant.catalog.services import model_record_save


class ModelRecordForm(forms.Form):
    kind = forms.ChoiceField(choices=ModelKind.choices, widget=forms.HiddenInput)
    name = forms.CharField(max_length=500, widget=forms.HiddenInput)
    licence = forms.CharField(
        label=gettext_lazy("Licence"),
        max_length=200,
        help_text=gettext_lazy("The licence that applies, e.g. Apache-2.0, MIT, Llama 3.1 Community License."),
    )
    source = forms.CharField(label=gettext_lazy("Source"), max_length=500, required=False)
    file_sha256 = forms.CharField(label=gettext_lazy("File SHA-256"), max_length=64, required=False)


@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        raise PermissionDenied
    if request.method == "POST":
        form = ModelRecordForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            if model_in_use(kind=data["kind"], name=data["name"]) is None:
                messages.error(request, _("This model is no longer in use; nothing was recorded."))
                return redirect("portal:models")
            try:
                model_record_save(actor=request.user, request=request, **data)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                messages.success(request, _("Recorded. The audit log keeps this change."))
            return redirect("portal:models")
        messages.error(request, _("Say which licence applies to this model."))
        return redirect("portal:models")
    in_use = models_in_use()
    rows = [
        (
            model,
            ModelRecordForm(
                initial={
                    "kind": model.kind,
                    "name": model.name,
                    "licence": model.licence,
                    "source": model.source,
                    "file_sha256": model.file_sha256,
                },
                auto_id=f"model{n}-%s",
            ),
        )
        for n, model in enumerate(in_use)
    ]
    servers = llm_server_reports()
    return render(
        request,
        "portal/models.html",
        {"servers": servers, "none_answers": not any(s.reachable for s in servers), "rows": rows},
    )
