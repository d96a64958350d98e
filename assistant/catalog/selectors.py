"""Which models are in use, what is recorded about each, and what the LLM server reports.

The models in use come from the settings (``LLM_*``, ``EMBEDDING_MODEL_PATH``,
``RERANKER_MODEL_PATH``), each named as ``ModelRecord.name`` names it. A packaged
model's licence, source and file digest are filled in from what ships
(``assistant.catalog.packaged``); anything an admin recorded takes precedence. A model
with no licence at all is flagged: someone has to say which one applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

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
    url: str
    configured_model: str
    models: list[ReportedModel]
    error: str  # empty when the server answered

    @property
    def reachable(self) -> bool:
        return not self.error

    @property
    def serves_configured(self) -> bool:
        return any(m.id == self.configured_model for m in self.models)


def llm_server_report() -> ServerReport:
    """Ask the configured LLM server, now, what it serves (a short timeout: a page waits on it)."""
    timeout = min(5.0, settings.LLM_CONNECT_TIMEOUT + 2.0)
    try:
        models = reported_models(base_url=settings.LLM_BASE_URL, api_key=settings.LLM_API_KEY, timeout=timeout)
    except LLMError as exc:
        return ServerReport(url=settings.LLM_BASE_URL, configured_model=settings.LLM_MODEL, models=[], error=str(exc))
    return ServerReport(url=settings.LLM_BASE_URL, configured_model=settings.LLM_MODEL, models=models, error="")


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
        location = str(gguf) if gguf else settings.LLM_BASE_URL
        return _in_use(ModelKind.LLM, name, known=known, location=location, records=records)
    # A server of one's own serving the packaged model under its id: the packaged file's digest
    # still says which weights that id names.
    known = packaged.smollm2(_packaged_gguf()) if settings.LLM_MODEL == PACKAGED_LLM_ID else None
    return _in_use(ModelKind.LLM, settings.LLM_MODEL, known=known, location=settings.LLM_BASE_URL, records=records)


def _packaged_gguf() -> Path | None:
    from assistant import local_llm

    try:
        return local_llm.packaged_gguf_path()
    except FileNotFoundError:
        return None


def _embedding(records: Records) -> ModelInUse:
    from ingest.embedding import model_path

    folder = Path(model_path())
    if settings.EMBEDDING_MODEL_PATH:
        return _in_use(
            ModelKind.EMBEDDING, str(settings.EMBEDDING_MODEL_PATH), known=None, location=str(folder), records=records
        )
    known = packaged.minilm(folder)
    return _in_use(ModelKind.EMBEDDING, packaged.MINILM_NAME, known=known, location=str(folder), records=records)


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
