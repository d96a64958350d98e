"""The product's offline and no-telemetry switches cover every library installed with it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from assistant.privacy import OFFLINE_ENVIRONMENT
from tests.conftest import REPO

# An environment variable read by a library, whose name says it switches reporting off.
_READ = re.compile(
    r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z0-9_]*(?:TELEMETRY|ANALYTICS|DO_NOT_TRACK|NO_TRACK|USAGE_STATS)[A-Z0-9_]*)["']"""
)


def test_every_telemetry_switch_read_by_an_installed_package_is_forced() -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    found: dict[str, str] = {}
    for path in site_packages.rglob("*.py"):
        try:
            text = path.read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        if "TRACK" not in text and "TELEMETRY" not in text and "ANALYTICS" not in text and "USAGE_STATS" not in text:
            continue
        for name in _READ.findall(text):
            found.setdefault(name, str(path.relative_to(site_packages)))
    assert {"HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "SCARF_NO_ANALYTICS"} <= set(found)  # the scan works
    missing = {name: where for name, where in found.items() if name not in OFFLINE_ENVIRONMENT}
    assert not missing, f"telemetry switches not forced by assistant/privacy.py: {missing}"


def test_libraries_see_telemetry_off_even_when_the_shell_turns_it_on() -> None:
    hostile = {
        "PATH": "/usr/bin:/bin",
        "DO_NOT_TRACK": "",
        "SCARF_NO_ANALYTICS": "",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "0",
        "DISABLE_TELEMETRY": "0",
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
    }
    code = (
        "import json, os, assistant.privacy\n"
        "from huggingface_hub import constants\n"
        "from unstructured.utils import _telemetry_opt_out\n"
        "print(json.dumps({'hf_offline': constants.HF_HUB_OFFLINE,"
        " 'hf_telemetry_off': constants.HF_HUB_DISABLE_TELEMETRY,"
        " 'unstructured_off': _telemetry_opt_out(), 'otel': os.environ['OTEL_SDK_DISABLED'],"
        " 'otel_traces': os.environ['OTEL_TRACES_EXPORTER']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=hostile, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "hf_offline": True,
        "hf_telemetry_off": True,
        "unstructured_off": True,
        "otel": "true",
        "otel_traces": "none",
    }


def test_openvino_model_tools_get_their_no_op_telemetry() -> None:
    # openvino_telemetry has no off switch and reached www.google-analytics.com during a
    # calibration on a fresh machine: the product makes it unimportable, and OpenVINO's
    # tools then use their own stub.
    import importlib

    import assistant.privacy  # noqa: F401

    with pytest.raises(ImportError):
        importlib.import_module("openvino_telemetry")
    from openvino.tools.ovc import telemetry_utils

    assert telemetry_utils.tm.__name__.endswith("telemetry_stub")
