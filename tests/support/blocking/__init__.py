"""Workers that block on marked files (see ``sitecustomize.py`` here), for tests
that must catch a worker mid-document or have a time limit fire, on any machine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent
REPO = HOOK_DIR.parents[2]

# A plain-text file containing this never finishes parsing.
BLOCK_PARSING = "[test marker: block while parsing]"
# A document with a passage containing this never finishes embedding.
BLOCK_EMBEDDING = "[test marker: block while embedding]"
# A document with a passage containing this waits, while embedding, until the file
# named by ``RESUME_FILE_ENV`` exists: a test restarts a server under it, then lets it go on.
PAUSE_EMBEDDING = "[test marker: pause while embedding]"
RESUME_FILE_ENV = "ASSISTANT_TEST_RESUME_FILE"
# A folder connector never finishes reading a file with this in its path while the
# file named by the environment variable BLOCK_CONNECTOR_GATE exists.
BLOCK_CONNECTOR_ITEM = "block-while-reading"
BLOCK_CONNECTOR_GATE_ENV = "BLOCK_CONNECTOR_GATE"


def blocking_env(env: Mapping[str, str], *, resume_file: Path | None = None) -> dict[str, str]:
    """The environment for a process that loads the blocking wrappers (``resume_file``: see ``PAUSE_EMBEDDING``)."""
    path = [str(HOOK_DIR), str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    extra = {RESUME_FILE_ENV: str(resume_file)} if resume_file is not None else {}
    return {"PYTHONPATH": os.pathsep.join(path), **extra}
