"""Chat pages. Views validate, check permissions, call one service and respond."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from assistant.chat import services
from assistant.chat.feedback import answer_for, feedback_set
from assistant.chat.limits import MAX_QUESTION_CHARS
from assistant.chat.models import Conversation, Feedback
from assistant.chat.sse import sse_event, sse_response


@login_required
def home(request: HttpRequest) -> HttpResponse:
    collections = services.readable_collections(request.user)
    user = cast(User, request.user)  # login_required: never anonymous here
    conversations = Conversation.objects.filter(user=user, collection__in=collections).select_related("collection")[:30]
    return render(request, "chat/home.html", {"collections": collections, "conversations": conversations})


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    collection = get_object_or_404(services.readable_collections(request.user), pk=request.POST.get("collection"))
    conversation = services.conversation_start(user=request.user, collection=collection)
    return redirect("chat:conversation", conversation_id=conversation.pk)


@login_required
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        current = services.conversation_for(user=request.user, conversation_id=conversation_id)
    except PermissionDenied:
        return render(request, "404.html", status=404)
    mine = Feedback.objects.filter(message=OuterRef("pk"), user=cast(User, request.user)).values("rating")
    rated = current.messages.annotate(my_rating=Subquery(mine[:1]))
    chat_messages = services.conversation_messages(user=request.user, conversation=current, messages=rated)
    return render(
        request,
        "chat/conversation.html",
        {"conversation": current, "chat_messages": chat_messages, "max_question_chars": MAX_QUESTION_CHARS},
    )


async def ask(request: HttpRequest, conversation_id: int) -> HttpResponseBase:
    """Stream an answer as server-sent events (``sources``, ``token``..., ``done``/``error``)."""
    if request.method != "POST":
        return HttpResponse(status=405)
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponse(status=401)
    question = (request.POST.get("question") or "").strip()
    if not question or len(question) > MAX_QUESTION_CHARS:
        return HttpResponseBadRequest(f"A question needs 1 to {MAX_QUESTION_CHARS} characters.")
    try:
        await sync_to_async(services.conversation_for)(user=user, conversation_id=conversation_id)
    except PermissionDenied:
        return HttpResponse(status=404)

    async def events() -> AsyncIterator[str]:
        async for event in services.answer_stream(user=user, conversation_id=conversation_id, question=question):
            yield sse_event(event)

    return sse_response(events())


@login_required
@require_POST
def feedback(request: HttpRequest, message_id: int) -> HttpResponse:
    """Thumbs up or down on an answer from the chat page (``rating`` 1 or -1, ``comment``)."""
    try:
        message = answer_for(user=request.user, message_id=message_id)
    except PermissionDenied:
        return JsonResponse({"error": {"code": "not_found", "message": "No such answer."}}, status=404)
    rating = request.POST.get("rating", "")
    if rating not in ("1", "-1"):
        return JsonResponse({"error": {"code": "invalid_feedback", "message": "A rating is 1 or -1."}}, status=400)
    try:
        saved = feedback_set(
            user=request.user, message=message, rating=int(rating), comment=request.POST.get("comment", "")
        )
    except ValueError as exc:
        return JsonResponse({"error": {"code": "invalid_feedback", "message": str(exc)}}, status=400)
    return JsonResponse({"message_id": message.pk, "rating": saved.rating, "comment": saved.comment})
