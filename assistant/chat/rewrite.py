"""Follow-up questions rewritten into standalone retrieval queries.

"And in 2023?" means nothing to a retriever on its own. When a conversation has
earlier turns, the LLM is asked (short prompt, few tokens, a time budget) to restate
the question so that it stands alone. When it is not reachable, fails, runs out of
time or answers with nothing or with something far too long, a heuristic takes over:
a short follow-up that only changes a value (a year, a quarter, a number) becomes the
previous question with that value swapped in; otherwise the previous question and the
follow-up are searched together, which carries the subject of the conversation
("revenue of Northwind") into the follow-up's query.
The question shown and stored stays the user's own; only retrieval uses the rewrite.

A rewrite is checked before it is used: one that carries markup, or shares no word
with the question or the user's earlier questions (the model copied a piece of an
answer, such as a table's ``<table>`` tag), is not a restatement, and the heuristic
takes over. Earlier answers reach the rewriting prompt as plain words, without the
Markdown or HTML of their tables. Retrieval searches the original question too
(``assistant.chat.services``), so a rewrite can add to what is found, never replace it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.chat.llm import LLMClient, LLMError

logger = logging.getLogger(__name__)

REWRITE_PROMPT = (
    "Rewrite the user's last question so that it can be understood without the conversation: "
    "replace words like 'it', 'that' or 'and in 2023?' by what they refer to. "
    "Reply with the rewritten question only."
)
REWRITE_MAX_TOKENS = 64
# Earlier turns given to the model: enough for the subject, short for a small model.
HISTORY_TURNS = 3
ANSWER_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Rewrite:
    query: str
    method: str  # "none" (no earlier turn), "llm" or "heuristic"
    reason: str = ""  # why the heuristic was used


# Values a short follow-up swaps into the previous question ("And in 2023?", "What
# about Q3?"): years, quarters and halves, other numbers. Each is matched by its kind.
_SLOTS = (
    ("year", re.compile(r"\b(?:19|20)\d{2}\b")),
    ("period", re.compile(r"\b(?:Q[1-4]|H[12])\b", re.IGNORECASE)),
    ("number", re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?(?![\w.,]*\d)")),
)
# A follow-up this short is elliptical: it only makes sense with the previous question.
_ELLIPTICAL_MAX_WORDS = 6


def _slot_values(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) of every slot value in ``text``, each span counted once."""
    found: list[tuple[str, int, int]] = []
    for kind, pattern in _SLOTS:
        for m in pattern.finditer(text):
            if not any(s < m.end() and m.start() < e for _, s, e in found):
                found.append((kind, m.start(), m.end()))
    return sorted(found, key=lambda v: v[1])


def _swap_values(previous: str, follow_up: str) -> str | None:
    """The previous question with the follow-up's values put in place of its own, or None.

    "What was Northwind's revenue in 2022?" + "And in 2023?" gives "What was
    Northwind's revenue in 2023?": searching both questions together would rank the
    2022 report first, since the previous question says 2022 and its subject words.
    """
    if len(follow_up.split()) > _ELLIPTICAL_MAX_WORDS:
        return None
    new = _slot_values(follow_up)
    old = _slot_values(previous)
    if not new or not old:
        return None
    replacements: dict[int, tuple[int, str]] = {}
    for kind, start, end in new:
        target = next((v for v in old if v[0] == kind and v[1] not in replacements), None)
        if target is None:
            return None  # a value of a kind the previous question does not have: no swap
        replacements[target[1]] = (target[2], follow_up[start:end])
    swapped = previous
    for start in sorted(replacements, reverse=True):
        end, value = replacements[start]
        swapped = swapped[:start] + value + swapped[end:]
    return swapped


def heuristic_query(history: Sequence[Turn], question: str) -> str:
    """The fallback without an LLM.

    A short follow-up that only changes a value ("And in 2023?") becomes the previous
    question with that value swapped in; any other follow-up is searched together
    with the previous question, which carries the conversation's subject into it.
    """
    previous = [t.text.strip() for t in history if t.role == "user" and t.text.strip()]
    if not previous:
        return question.strip()
    swapped = _swap_values(previous[-1], question.strip())
    return swapped if swapped is not None else f"{previous[-1]} {question.strip()}"


_MARKUP = re.compile(r"</?[A-Za-z][^>]*>|^\s*\|?[\s:|-]*-{3,}[\s:|-]*\|?\s*$|[|`*#]+", re.MULTILINE)
_WORD = re.compile(r"[^\W_]{3,}")


def plain_words(text: str) -> str:
    """Text without HTML tags or Markdown table, code and emphasis marks, blank space folded."""
    return " ".join(_MARKUP.sub(" ", text).split())


def rewrite_messages(history: Sequence[Turn], question: str) -> list[dict[str, str]]:
    recent = list(history)[-HISTORY_TURNS * 2 :]
    lines = []
    for turn in recent:
        if turn.role == "user":
            lines.append(f"User: {turn.text.strip()}")
        else:
            lines.append(f"Assistant: {plain_words(turn.text)[:ANSWER_EXCERPT_CHARS]}")
    conversation = "\n".join(lines)
    user = f"Conversation:\n{conversation}\n\nLast question: {question.strip()}\n\nRewritten question:"
    return [{"role": "system", "content": REWRITE_PROMPT}, {"role": "user", "content": user}]


_LABEL = re.compile(r"^(rewritten question|standalone question|question|query)\s*:\s*", re.IGNORECASE)


def _tidy(text: str) -> str:
    """The first non-empty line, without a label or quotes the model may add."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _LABEL.sub("", line).strip()
    return line.strip("\"'`").strip()


def rewrite_is_plausible(rewrite: str, *, history: Sequence[Turn], question: str) -> bool:
    """A restatement keeps some word of what the user asked and carries no markup."""
    if plain_words(rewrite) != " ".join(rewrite.split()):
        return False
    asked = " ".join([question, *(t.text for t in history if t.role == "user")])
    words = {w.casefold() for w in _WORD.findall(asked)}
    return any(w.casefold() in words for w in _WORD.findall(rewrite))


async def query_rewrite(*, history: Sequence[Turn], question: str, llm: LLMClient, timeout_s: float) -> Rewrite:
    """A standalone retrieval query for ``question`` asked after ``history``."""
    if not any(t.role == "user" for t in history):
        return Rewrite(query=question.strip(), method="none")
    fallback = heuristic_query(history, question)
    if timeout_s <= 0:
        return Rewrite(query=fallback, method="heuristic", reason="rewriting with the LLM is turned off")

    async def ask() -> str:
        parts = []
        async for delta in llm.stream_chat(
            rewrite_messages(history, question), max_tokens=REWRITE_MAX_TOKENS, temperature=0.0
        ):
            parts.append(delta.text)
        return "".join(parts)

    try:
        text = _tidy(await asyncio.wait_for(ask(), timeout=timeout_s))
    except TimeoutError:
        reason = f"the LLM did not rewrite within {timeout_s:g} s"
    except LLMError as exc:
        reason = str(exc)
    else:
        # A rewrite restates a question: empty, or several times longer than the two
        # questions together, means the model did something else (answered, rambled).
        if text and len(text) <= max(3 * len(fallback), 200):
            if rewrite_is_plausible(text, history=history, question=question):
                return Rewrite(query=text, method="llm")
            reason = f"the LLM's rewrite {text[:80]!r} kept nothing of the question"
        else:
            reason = "the LLM's rewrite was empty" if not text else "the LLM's rewrite was too long"
    logger.info("Query rewrite fell back to the heuristic: %s", reason)
    return Rewrite(query=fallback, method="heuristic", reason=reason)


def searched_queries(*, question: str, query: str) -> list[str]:
    """What retrieval searches for a question: its rewrite, and the question itself when they differ."""
    asked = question.strip()
    return [query] if query.strip() == asked else [query, asked]
