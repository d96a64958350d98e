from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from assistant.chat.feedback import feedback_export


class Command(BaseCommand):
    help = "Export rated answers as chat-format JSONL for LoRA fine-tuning (axolotl, trl)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="The JSONL file to write ('-' for standard output).")
        parser.add_argument("--rating", choices=["up", "down", "all"], default="all")

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in feedback_export(rating=options["rating"]))
        if options["out"] == "-":
            for line in lines:
                self.stdout.write(line, ending="")
                count += 1
        else:
            # Written aside and renamed: a failed export never leaves half a file behind.
            target = Path(options["out"])
            partial = target.with_name(target.name + ".partial")
            with partial.open("w", encoding="utf-8") as out:
                for line in lines:
                    out.write(line)
                    count += 1
            partial.replace(target)
        self.stderr.write(f"Exported {count} rated answers.")
