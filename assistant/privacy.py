"""Switches that keep every library offline and silent.

Imported first by ``manage.py``, the ASGI/WSGI entry points and the Celery app, so
that they are in force before any third-party module reads them. They are forced,
not defaulted: an inherited shell variable must not be able to turn telemetry or
hub downloads back on. Pointing the product at another server is done through the
settings (``LLM_BASE_URL`` and friends), never through these.
"""

from __future__ import annotations

import os
import sys

OFFLINE_ENVIRONMENT: dict[str, str] = {
    # Hugging Face: never contact the hub, never send telemetry.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    # The older generic switch huggingface_hub still reads.
    "DISABLE_TELEMETRY": "1",
    # unstructured (Scarf analytics) and the generic opt-out many libraries honour.
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    # vLLM and similar usage reporters.
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "False",
    # onnxruntime (used by unstructured) ships Microsoft's 1DS telemetry client, which
    # looks up mobile.events.data.microsoft.com from a native thread during ingestion.
    "ORT_DISABLE_TELEMETRY": "1",
    # OpenTelemetry (installed with redis and FastAPI, which the LLM server uses): no
    # SDK and no exporter, whatever OTEL_EXPORTER_OTLP_ENDPOINT an inherited shell has.
    "OTEL_SDK_DISABLED": "true",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "FASTAPI_OTEL_AUTO_CONFIGURE": "false",
    # Tokenizers fork-safety noise in Celery prefork workers.
    "TOKENIZERS_PARALLELISM": "false",
}


TELEMETRY_MODULES = ("openvino_telemetry",)


def enforce_offline_environment() -> None:
    """Set the offline and no-telemetry switches for this process and its children."""
    os.environ.update(OFFLINE_ENVIRONMENT)
    # OpenVINO's model tools report usage through ``openvino_telemetry`` and have no
    # switch for it; they fall back to their own no-op stub when it cannot be imported.
    for module in TELEMETRY_MODULES:
        sys.modules[module] = None  # type: ignore[assignment]


enforce_offline_environment()
