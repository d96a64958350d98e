"""An OpenAI-compatible server that answers at once: the model taken out of a load run.

    .venv/bin/python bench/instant_llm.py --port 8799 [--pieces 24]

``/v1/models`` lists one model; ``/v1/chat/completions`` streams ``--pieces`` short
pieces and ``[DONE]`` without waiting (the non-streamed form is not served). A plain
ASGI app under uvicorn, in a process of its own, so serving it takes no time from
the web process being measured. ``bench/load.py`` starts it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

MODEL = "instant"

Scope = dict[str, Any]


def app_for(pieces: int) -> Any:
    words = [
        "The",
        "meal",
        "allowance",
        "abroad",
        "is",
        "85",
        "euros",
        "a",
        "day,",
        "as",
        "the",
        "policy",
        "says",
        "[1].",
    ]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the whole request body
            message = await receive()
            more = message.get("more_body", False)
        if scope["path"].endswith("/models"):
            body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for n in range(pieces):
            delta = {"content": words[n % len(words)] + " "}
            chunk = {"model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await send(
                {"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pieces", type=int, default=24)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(app_for(args.pieces), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
