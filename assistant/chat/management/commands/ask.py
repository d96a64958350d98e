"""``manage.py ask --collection NAME [--as USER] [--json] [--retrieve-only] "question"``"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from assistant.accounts.selectors import documents_visible_to
from assistant.chat import services
from ingest.models import Collection


def _public(citation: dict[str, Any]) -> dict[str, Any]:
    return {k: citation[k] for k in ("document", "page", "chunk_id", "score", "text")}


class Command(BaseCommand):
    help = (
        "Ask a question about a collection from the shell: as an operator who may read every collection, "
        "or with --as USER exactly as that user."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("question")
        parser.add_argument("--collection", required=True)
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--retrieve-only", action="store_true", help="Skip the LLM; print the top passages.")
        parser.add_argument("-k", type=int, default=None, help="How many passages to retrieve.")
        parser.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            help="Ask with exactly this user's permissions (collections, groups, restricted documents).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        name = options["collection"]
        if options["as_user"]:
            user = get_user_model().objects.filter(username=options["as_user"]).first()
            if user is None:
                raise CommandError(f"No user named '{options['as_user']}'.")
            collection = services.readable_collections(user).filter(name=name).first()
            if collection is None:
                # The same words whether the collection exists or not: they reveal nothing.
                raise CommandError(f"Permission denied: {user.username} may not read a collection named '{name}'.")
        else:
            collection = Collection.objects.filter(name=name).first()
            if collection is None:
                raise CommandError(f"No collection named '{name}'.")
        question = options["question"].strip()
        if not question:
            raise CommandError("The question is empty.")
        if options["retrieve_only"]:
            from django.conf import settings

            passages = services.passages_retrieve(
                user=user, collection=collection, query=question, k=options["k"] or settings.RETRIEVAL_TOP_K
            )
            citations = [services.citation_for(n, p) for n, p in enumerate(passages, start=1)]
            answer, model, error = None, None, ""
        else:
            result = services.answer_question(user=user, collection=collection, question=question)
            citations, answer, model, error = result.citations, result.text, result.model, result.error

        if options["json"]:
            self.stdout.write(
                json.dumps({"answer": answer, "model": model, "citations": [_public(c) for c in citations]})
            )
        else:
            if answer is not None:
                self.stdout.write(answer.strip() + "\n")
            for c in citations:
                page = f", page {c['page_label']}" if c["page_label"] else ""
                self.stdout.write(f"[{c['n']}] {c['document']}{page} (score {c['score']:.3f})")
                if answer is None:
                    self.stdout.write("    " + c["text"][:300].replace("\n", " "))
            if model:
                self.stdout.write(f"\nAnswered by {model}")
        pending = documents_visible_to(user=user, collection=collection).exclude(status__in=["ready", "failed"]).count()
        if pending:
            self.stderr.write(
                f"Note: {pending} document(s) of this collection are still being indexed and were not searched."
            )
        if error:
            self.stderr.write(error)
            sys.exit(1)
