"""OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions``.

Any OpenAI SDK pointed at ``<site>/v1`` with a personal API token works: each
collection the caller may read is a model (its id is the collection's name), and a
chat completion answers the last user message from that collection through the
same ``answer_stream`` as the chat page, with the numbered sources appended to the
message and given in full in an extra ``citations`` field.

Usage figures: ``completion_tokens`` counts the streamed pieces (one token each on
llama.cpp and vLLM); ``prompt_tokens`` is an estimate (four characters a token),
since the retrieval prompt is built here and the LLM server does not report usage
when streaming.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from assistant.accounts.models import ApiToken
from assistant.accounts.services import TokenUserRefused, token_authenticate
from assistant.chat import services
from assistant.chat.events import AnswerEvent, AnswerFold, Failed, Token, answer_collect
from assistant.chat.limits import MAX_QUESTION_CHARS
from assistant.chat.prompts import build_messages
from assistant.chat.sse import SSE_DONE, sse_data, sse_response
from ingest.models import Collection

OWNER = "assistant"


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JsonResponse:
    # OpenAI's error shape; SDKs read error.message and map the status to an exception.
    response = JsonResponse({"error": {"message": message, "type": kind, "code": code, "param": None}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _token(request: HttpRequest) -> ApiToken | JsonResponse:
    """The caller's token, or the error to answer with (without one, or with a refused one)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return _unauthenticated()
    try:
        token = token_authenticate(plaintext=value.strip())
    except TokenUserRefused as refused:
        kind = "authentication_error" if refused.status == 401 else "api_error"
        return _error(refused.status, refused.message, refused.code, kind)
    return token or _unauthenticated()


def _unauthenticated() -> JsonResponse:
    return _error(401, "A valid API token is required: Authorization: Bearer <token>.", "invalid_api_key")


def model_id(collection: Collection) -> str:
    return collection.name


def _collection_named(user: Any, model: str) -> Collection | None:
    readable = services.readable_collections(user)
    found = readable.filter(name=model).first()
    if found is None and model.startswith("collection-") and model[11:].isdigit():
        found = readable.filter(pk=int(model[11:])).first()
    return found


def _models(user: Any) -> list[dict[str, Any]]:
    return [
        {"id": model_id(c), "object": "model", "created": int(c.created_at.timestamp()), "owned_by": OWNER}
        for c in services.readable_collections(user).order_by("name")
    ]


async def models(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _error(405, "Use GET.", "method_not_allowed")
    token = await sync_to_async(_token)(request)
    if isinstance(token, JsonResponse):
        return token
    return JsonResponse({"object": "list", "data": await sync_to_async(_models)(token.user)})


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def _sources_text(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return ""
    lines = []
    for c in citations:
        page = f", p. {c['page_label']}" if c.get("page_label") else ""
        lines.append(f"[{c['n']}] {c['document']}{page}")
    return "\n\nSources:\n" + "\n".join(lines)


def _usage(question: str, citations: list[dict[str, Any]], pieces: int) -> dict[str, int]:
    prompt_chars = sum(len(m["content"]) for m in build_messages(question, [])) + sum(
        len(c.get("text", "")) + 40 for c in citations
    )
    prompt = max(1, -(-prompt_chars // 4))
    return {"prompt_tokens": prompt, "completion_tokens": pieces, "total_tokens": prompt + pieces}


def _parse(request: HttpRequest) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None, _error(400, "The body is not valid JSON.", "invalid_json")
    if not isinstance(body, dict):
        return None, _error(400, "The body must be a JSON object.", "invalid_json")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return None, _error(400, "'model' names a collection (see GET /v1/models).", "missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, _error(400, "'messages' must be a non-empty list.", "missing_messages")
    questions = [_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    question = questions[-1].strip() if questions else ""
    if not question or len(question) > MAX_QUESTION_CHARS:
        return None, _error(
            400, f"The last user message needs 1 to {MAX_QUESTION_CHARS} characters.", "invalid_question"
        )
    return {"model": body["model"], "question": question, "stream": bool(body.get("stream"))}, None


def _start(user: Any, model: str, question: str) -> int | None:
    collection = _collection_named(user, model)
    if collection is None:
        return None
    try:
        return services.conversation_start(user=user, collection=collection, title=question).pk
    except PermissionDenied:
        return None


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """Answer the last user message from the collection named by ``model``.

    Earlier messages are not used for retrieval: each completion is one grounded
    question, as in a new conversation.
    """
    if request.method != "POST":
        return _error(405, "Use POST.", "method_not_allowed")
    token = await sync_to_async(_token)(request)
    if isinstance(token, JsonResponse):
        return token
    parsed, problem = _parse(request)
    if problem is not None or parsed is None:
        return problem or _error(400, "Bad request.", "invalid_request")
    user = token.user
    conversation_id = await sync_to_async(_start)(user, parsed["model"], parsed["question"])
    if conversation_id is None:
        return _error(404, f"The model '{parsed['model']}' does not exist (see GET /v1/models).", "model_not_found")
    events = services.answer_stream(user=user, conversation_id=conversation_id, question=parsed["question"])
    created = int(time.time())
    if parsed["stream"]:
        return sse_response(_chunks(events, model=parsed["model"], question=parsed["question"], created=created))
    # The stored answer: markers naming no source removed, sources marked cited.
    answer = await answer_collect(events)
    if answer.error:
        return _error(502, answer.error, "generation_failed", kind="server_error")
    return JsonResponse(
        {
            "id": f"chatcmpl-{answer.message_id}",
            "object": "chat.completion",
            "created": created,
            "model": parsed["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text + _sources_text(answer.citations)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(parsed["question"], answer.citations, answer.pieces),
            "citations": answer.citations,
            "conversation_id": conversation_id,
        }
    )


async def _chunks(events: AsyncIterator[AnswerEvent], *, model: str, question: str, created: int) -> AsyncIterator[str]:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"  # the answer's id is known only at the end

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return sse_data(body)

    fold = AnswerFold()
    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        fold.add(event)
        if isinstance(event, Token):
            yield chunk({"content": event.text})
        elif isinstance(event, Failed):
            yield sse_data({"error": {"message": event.message, "type": "server_error", "code": "generation_failed"}})
            return
    answer = fold.answer()
    if answer.citations:
        yield chunk({"content": _sources_text(answer.citations)})
    yield chunk({}, "stop", citations=answer.citations, usage=_usage(question, answer.citations, answer.pieces))
    yield SSE_DONE
