"""Which models are in use, what is recorded about each, and what each LLM server reports.

The models in use come from the settings (``LLM_*``, ``EMBEDDING_MODEL_PATH``,
``RERANKER_MODEL_PATH``), each named as ``ModelRecord.name`` names it. A packaged
model's licence, source and file digest are filled in from what ships
(``assistant.catalog.packaged``); anything an admin recorded takes precedence. A model
with no licence at all is flagged: someone has to say which one applies.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from assistant.audit.boundary import url_without_secrets
from assistant.catalog import packaged
from assistant.catalog.models import ModelKind, ModelRecord
from assistant.chat.llm import LLMError, ReportedModel, reported_models

# The id the packaged SmolLM2 is served under (``LLM_MODEL``'s default).
PACKAGED_LLM_ID = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ModelInUse:
    kind: str
    name: str
    packaged: bool
    licence: str
    source: str
    file_sha256: str
    location: str  # where the product reads it from: a file, a folder, a server
    record: ModelRecord | None

    @property
    def kind_label(self) -> str:
        return str(ModelKind(self.kind).label)

    @property
    def licence_missing(self) -> bool:
        return not self.licence


@dataclass(frozen=True)
class ServerReport:
    url: str  # without user, password or query
    configured_model: str
    models: list[ReportedModel]
    error: str  # empty when the server answered
    # Whether this web process has taken the server out of its pool (after a failed
    # answer or probe: ``assistant.chat.llm_pool``); None with a single server, which has no pool.
    taken_out: bool | None = None
    taken_out_because: str = ""

    @property
    def reachable(self) -> bool:
        return not self.error

    @property
    def serves_configured(self) -> bool:
        return any(m.id == self.configured_model for m in self.models)


def _ask(url: str, *, timeout: float) -> tuple[list[ReportedModel], str]:
    try:
        return reported_models(base_url=url, api_key=settings.LLM_API_KEY, timeout=timeout), ""
    except LLMError as exc:
        return [], str(exc)


def llm_server_reports() -> list[ServerReport]:
    """Ask every configured LLM server, now, what it serves (a short timeout: a page waits on it).

    The servers are asked at once, so the page waits for the slowest, not for their sum.
    With several servers, each also says whether this process's pool has taken it out;
    the pool is only read here: the live answer is shown beside it, and the pool is left
    to its own probes.
    """
    urls = list(settings.LLM_BASE_URLS)
    timeout = min(5.0, settings.LLM_CONNECT_TIMEOUT + 2.0)
    states = {}
    if len(urls) > 1:
        from assistant.chat.llm_pool import settings_pool

        states = {state.url: state for state in settings_pool().states()}
    with ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="llm-report") as executor:
        answers = list(executor.map(lambda url: _ask(url, timeout=timeout), urls))
    reports = []
    for url, (models, error) in zip(urls, answers, strict=True):
        state = states.get(url.rstrip("/"))
        shown = url_without_secrets(url)
        reports.append(
            ServerReport(
                url=shown,
                configured_model=settings.LLM_MODEL,
                models=models,
                # The messages name the server as configured, password and all.
                error=error.replace(url.rstrip("/"), shown),
                taken_out=None if state is None else not state.up,
                taken_out_because="" if state is None else state.error.replace(url.rstrip("/"), shown),
            )
        )
    return reports


Records = dict[tuple[str, str], ModelRecord]


def _in_use(
    kind: ModelKind, name: str, *, known: packaged.Provenance | None, location: str, records: Records
) -> ModelInUse:
    record = records.get((kind.value, name))
    computed = ""
    if known is not None and known.file is not None:
        computed = packaged.file_sha256(known.file)
    return ModelInUse(
        kind=kind.value,
        name=name,
        packaged=known is not None,
        licence=(record.licence if record and record.licence else "") or (known.licence if known else ""),
        source=(record.source if record and record.source else "") or (known.source if known else ""),
        file_sha256=(record.file_sha256 if record and record.file_sha256 else "") or computed,
        location=location,
        record=record,
    )


def _llm(records: Records) -> ModelInUse:
    if settings.LLM_EMBEDDED:
        from assistant import local_llm

        custom = bool(settings.LLM_GGUF_PATH)
        try:
            gguf: Path | None = local_llm.gguf_path()
        except FileNotFoundError:
            gguf = None
        known = None if custom else packaged.smollm2(gguf)
        # A GGUF of one's own is named by its file: it may be served under the default alias.
        name = str(settings.LLM_GGUF_PATH) if custom else settings.LLM_MODEL
        location = str(gguf) if gguf else _llm_servers()
        return _in_use(ModelKind.LLM, name, known=known, location=location, records=records)
    # A server of one's own serving the packaged model under its id: the packaged file's digest
    # still says which weights that id names.
    known = packaged.smollm2(_packaged_gguf()) if settings.LLM_MODEL == PACKAGED_LLM_ID else None
    return _in_use(ModelKind.LLM, settings.LLM_MODEL, known=known, location=_llm_servers(), records=records)


def _llm_servers() -> str:
    return ", ".join(url_without_secrets(url) for url in settings.LLM_BASE_URLS)


def _packaged_gguf() -> Path | None:
    from assistant import local_llm

    try:
        return local_llm.packaged_gguf_path()
    except FileNotFoundError:
        return None


def _embedding(records: Records) -> ModelInUse:
    from ingest.embedding import model_path

    folder = Path(model_path())
    # With a server the vectors are made there; the folder gives only the tokenizer and
    # the dimension (ingest/embedding_server.py), and still names the model.
    location = url_without_secrets(settings.EMBEDDING_BASE_URL) if settings.EMBEDDING_BASE_URL else str(folder)
    if settings.EMBEDDING_MODEL_PATH:
        return _in_use(
            ModelKind.EMBEDDING, str(settings.EMBEDDING_MODEL_PATH), known=None, location=location, records=records
        )
    known = packaged.minilm(folder)
    return _in_use(ModelKind.EMBEDDING, packaged.MINILM_NAME, known=known, location=location, records=records)


def models_in_use() -> list[ModelInUse]:
    """The LLM, the embedding model and the reranker (when one is configured), as the admin sees them."""
    records = {(r.kind, r.name): r for r in ModelRecord.objects.select_related("recorded_by")}
    found = [_llm(records), _embedding(records)]
    if settings.RERANKER_MODEL_PATH:
        path = str(settings.RERANKER_MODEL_PATH)
        found.append(_in_use(ModelKind.RERANKER, path, known=None, location=path, records=records))
    return found


def model_in_use(*, kind: str, name: str) -> ModelInUse | None:
    """The model in use of this kind and name; None if it is not one of them."""
    return next((m for m in models_in_use() if m.kind == kind and m.name == name), None)
