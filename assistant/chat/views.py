"""Chat pages. Views validate, check permissions, call one service and respond."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from assistant.accounts.selectors import document_for
from assistant.chat import conversations, services, sources
from assistant.chat.events import Done, Failed
from assistant.chat.feedback import answer_for, feedback_set
from assistant.chat.limits import MAX_QUESTION_CHARS
from assistant.chat.models import Feedback
from assistant.chat.rendering import answer_html
from assistant.chat.sse import sse_event, sse_response
from ingest import originals


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "404.html", status=404)


def _sidebar(request: HttpRequest) -> dict[str, Any]:
    search = request.GET.get("q", "")[:200]
    found = conversations.conversations_of(user=request.user, search=search)
    return {
        "days": conversations.conversations_by_day(found),
        "search": search,
        "collections": services.readable_collections(request.user),
    }


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/home.html", _sidebar(request))


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    """A conversation on a collection, or on one document of it ("chat with this document")."""
    if request.POST.get("document"):
        try:
            document = document_for(user=request.user, document_id=int(request.POST["document"]))
        except (PermissionDenied, ValueError):
            return _not_found(request)
        conversation = services.conversation_start(
            user=request.user, collection=document.collection, document=document, title=document.name
        )
    else:
        collection = get_object_or_404(services.readable_collections(request.user), pk=request.POST.get("collection"))
        conversation = services.conversation_start(user=request.user, collection=collection)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        current = services.conversation_for(user=request.user, conversation_id=conversation_id)
    except PermissionDenied:
        return _not_found(request)
    mine = Feedback.objects.filter(message=OuterRef("pk"), user=cast(User, request.user)).values("rating")
    rated = current.messages.annotate(my_rating=Subquery(mine[:1]))
    chat_messages = services.conversation_messages(user=request.user, conversation=current, messages=rated)
    return render(
        request,
        "chat/conversation.html",
        {
            **_sidebar(request),
            "conversation": current,
            "chat_messages": chat_messages,
            "max_question_chars": MAX_QUESTION_CHARS,
            "pending": conversations.documents_pending(user=request.user, conversation=current),
            "demo_model": conversations.demo_model_in_use(),
        },
    )


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        conversations.conversation_rename(
            user=request.user, conversation_id=conversation_id, title=request.POST.get("title", "")
        )
    except PermissionDenied:
        return _not_found(request)
    except ValueError as exc:
        flash.error(request, str(exc))
    return redirect("chat:conversation", conversation_id=conversation_id)


@login_required
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """GET asks to confirm; only the confirming POST deletes."""
    try:
        current = services.conversation_for(user=request.user, conversation_id=conversation_id)
    except PermissionDenied:
        return _not_found(request)
    if request.method != "POST":
        return render(request, "chat/delete.html", {**_sidebar(request), "conversation": current})
    conversations.conversation_delete(user=request.user, conversation_id=conversation_id)
    flash.success(request, gettext("Deleted “%(title)s”.") % {"title": current})
    return redirect("chat:home")


async def ask(request: HttpRequest, conversation_id: int) -> HttpResponseBase:
    """Stream an answer as server-sent events (``sources``, ``token``..., ``done``/``error``).

    ``replace_last=1`` drops the last question and its answer first (regenerate, or
    edit and resend). The end event also carries the stored answer as sanitized HTML.
    """
    if request.method != "POST":
        return HttpResponse(status=405)
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse(status=401)
    question = (request.POST.get("question") or "").strip()
    if not question or len(question) > MAX_QUESTION_CHARS:
        return HttpResponseBadRequest(
            gettext("A question needs 1 to %(max)s characters.") % {"max": MAX_QUESTION_CHARS}
        )
    try:
        await sync_to_async(services.conversation_for)(user=user, conversation_id=conversation_id)
    except PermissionDenied:
        return HttpResponse(status=404)
    replace_last = request.POST.get("replace_last") == "1"
    # The stream is read after the middleware chain returned: it speaks the language
    # the request was answered in (messages the answer may carry, "nothing found").
    language = translation.get_language()

    async def events() -> AsyncIterator[str]:
        translation.activate(language)
        async for event in services.answer_stream(
            user=user, conversation_id=conversation_id, question=question, replace_last=replace_last
        ):
            if isinstance(event, Done | Failed):
                html = answer_html(event.text, citations=event.citations, message_id=event.message_id)
                yield sse_event(event, html=str(html))
            else:
                yield sse_event(event)

    return sse_response(events())


@login_required
def source(request: HttpRequest, message_id: int, n: int) -> HttpResponse:
    """The source panel's content for citation ``n`` of an answer (an HTML fragment)."""
    try:
        view = sources.source_view(user=request.user, message_id=message_id, n=n)
    except PermissionDenied:
        return HttpResponse(gettext(sources.NO_SUCH_SOURCE), status=404, content_type="text/plain")
    return render(request, "chat/source.html", {"source": view})


@login_required
def document(request: HttpRequest, document_id: int) -> HttpResponse:
    """A document's text page by page: the preview of formats a browser cannot show."""
    try:
        found, pages = sources.document_preview(user=request.user, document_id=document_id)
    except PermissionDenied:
        return _not_found(request)
    return render(
        request,
        "chat/document.html",
        {"document": found, "pages": pages, "unit": sources.page_unit(found)},
    )


@login_required
def document_original(request: HttpRequest, document_id: int) -> HttpResponseBase:
    """The uploaded file itself, to whoever may read it (PDFs open in the browser's viewer)."""
    try:
        found, content_type = sources.document_original(user=request.user, document_id=document_id)
    except PermissionDenied:
        return _not_found(request)
    try:
        stored = originals.original_open(found.file.name)
    except FileNotFoundError:
        return _not_found(request)
    inline = content_type != "application/octet-stream"
    return FileResponse(stored, as_attachment=not inline, filename=found.name, content_type=content_type)


@login_required
@require_POST
def feedback(request: HttpRequest, message_id: int) -> HttpResponse:
    """Thumbs up or down on an answer from the chat page (``rating`` 1 or -1, ``comment``)."""
    try:
        message = answer_for(user=request.user, message_id=message_id)
    except PermissionDenied:
        return JsonResponse({"error": {"code": "not_found", "message": gettext("No such answer.")}}, status=404)
    rating = request.POST.get("rating", "")
    if rating not in ("1", "-1"):
        return JsonResponse(
            {"error": {"code": "invalid_feedback", "message": gettext("A rating is 1 or -1.")}}, status=400
        )
    try:
        saved = feedback_set(
            user=request.user, message=message, rating=int(rating), comment=request.POST.get("comment", "")
        )
    except ValueError as exc:
        return JsonResponse({"error": {"code": "invalid_feedback", "message": str(exc)}}, status=400)
    return JsonResponse({"message_id": message.pk, "rating": saved.rating, "comment": saved.comment})
