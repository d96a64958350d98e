"""The thinking of reasoning models, kept apart from their answer.

DeepSeek-R1 (and its distills) and Qwen3 in thinking mode write their reasoning
before the answer. vLLM with a reasoning parser sends it in a field of its own
(``delta.reasoning_content``, or ``delta.reasoning`` in newer versions); other
servers send it inline, as ``<think>…</think>`` at the start of the text. Either
way it is not the answer: it is not shown as one, not searched for citations, not
stored as the answer text. ``ThinkFilter`` splits the inline form as it streams, a
tag cut across two pieces included; ``think_split`` handles what a stream can only
know at its end (R1's chat template opens ``<think>`` in the prompt, so the model
writes only the closing tag).
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "<think>"
CLOSE = "</think>"


@dataclass(frozen=True)
class Split:
    answer: str
    reasoning: str


class ThinkFilter:
    """Feed streamed text; get back (answer, reasoning) pieces, tags removed.

    Only a ``<think>`` at the very start of the output (after blank space) opens
    reasoning: a model quoting the tag later in its answer is not reasoning.
    """

    def __init__(self) -> None:
        # "start": undecided, "think": inside, "gap": blank space after it, "answer"
        self._state = "start"
        self._buffer = ""

    def feed(self, text: str) -> Split:
        self._buffer += text
        answer: list[str] = []
        reasoning: list[str] = []
        while self._buffer:
            if self._state == "start":
                stripped = self._buffer.lstrip()
                if stripped.startswith(OPEN):
                    self._buffer = stripped[len(OPEN) :]
                    self._state = "think"
                elif OPEN.startswith(stripped):
                    break  # blank space or a part of "<think>" so far: wait for more
                else:
                    self._state = "answer"
            elif self._state == "think":
                at = self._buffer.find(CLOSE)
                if at >= 0:
                    reasoning.append(self._buffer[:at])
                    self._buffer = self._buffer[at + len(CLOSE) :]
                    self._state = "gap"
                    continue
                keep = _partial_suffix(self._buffer, CLOSE)
                reasoning.append(self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep :]
                break
            elif self._state == "gap":
                self._buffer = self._buffer.lstrip()
                if self._buffer:
                    self._state = "answer"
            else:
                answer.append(self._buffer)
                self._buffer = ""
        return Split(answer="".join(answer), reasoning="".join(reasoning))

    def close(self) -> Split:
        """What is still held back when the stream ends (an unclosed thought stays a thought)."""
        rest, self._buffer = self._buffer, ""
        if self._state == "think":
            return Split(answer="", reasoning=rest)
        return Split(answer=rest, reasoning="")


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def think_split(text: str) -> Split:
    """A whole answer with an orphan ``</think>``: everything before it was reasoning."""
    at = text.find(CLOSE)
    if at < 0:
        return Split(answer=text, reasoning="")
    return Split(answer=text[at + len(CLOSE) :].lstrip(), reasoning=text[:at].replace(OPEN, "").strip())
