"""The retrieval-test page: a question's ranked passages from each retriever, as a chosen user.

For collection managers (and superusers). Choosing the collection is a GET (it decides
whom one may view as); running a test is a POST, since it writes to the audit log.
The work and the permission checks are ``assistant.chat.retrieval_debug.retrieval_test``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.translation import gettext_lazy as _

from assistant.accounts.models import Role
from assistant.accounts.selectors import collection_readers, collections_with_role
from assistant.chat.retrieval_debug import QUESTION_MAX, retrieval_test
from ingest.models import Collection

# The "view as" list: past this many readers, the first ones by name.
READERS_SHOWN = 500


class RetrievalTestForm(forms.Form):
    question = forms.CharField(label=_("Question"), max_length=QUESTION_MAX, widget=forms.Textarea(attrs={"rows": 2}))
    as_user: forms.ModelChoiceField[Any] = forms.ModelChoiceField(queryset=None, label=_("View as"), empty_label=None)

    def __init__(self, *args: Any, collection: Collection, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        readers = collection_readers(collection=collection)
        shown = list(readers.values_list("pk", flat=True)[:READERS_SHOWN])
        self.fields["as_user"].queryset = readers.filter(pk__in=shown)  # type: ignore[attr-defined]


@login_required
def retrieval_test_page(request: HttpRequest) -> HttpResponse:
    managed = collections_with_role(user=request.user, role=Role.MANAGE).order_by("name")
    if not managed.exists():
        raise PermissionDenied
    chosen = request.POST.get("collection") or request.GET.get("collection")
    # Not found, whether it does not exist or is not this user's to manage.
    pk = (int(chosen) if chosen.isdigit() else 0) if chosen else managed[0].pk
    collection = get_object_or_404(managed, pk=pk)
    form = RetrievalTestForm(request.POST or None, collection=collection, initial={"as_user": request.user.pk})
    comparison = None
    if request.method == "POST" and form.is_valid():
        comparison = retrieval_test(
            viewer=request.user,
            as_user=form.cleaned_data["as_user"],
            collection=collection,
            question=form.cleaned_data["question"],
            request=request,
        )
    return render(
        request,
        "portal/retrieval_test.html",
        {"collections": managed, "collection": collection, "form": form, "comparison": comparison},
    )
