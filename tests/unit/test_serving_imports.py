"""What a serving process imports (issue 17: a worker and its horses peak at 300 MB at most): an RQ
worker at start and a web process with its URLconf load their models, the exact ONNX one served
by onnxruntime, without the converters (onnx, skl2onnx, needed only to convert at upload), dask
(a dataset run's) or pytest. skops is handed the estimators it trusts (trust.public_estimators),
which it would otherwise list by walking all of scikit-learn, importing dask and pytest."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_SERVING = ("onnx", "skl2onnx", "dask", "distributed", "pytest")

START = {
    # What `manage.py rqworker` (scripts/worker) imports, then ModelportWorker.work's warm-up.
    "worker": """
import django
django.setup()
from django.core.management import load_command_class
load_command_class("django_rq", "rqworker")
from predictions import tasks, worker
from modelregistry import services
services.warm_defaults()
""",
    # What gunicorn's worker imports, then the URLconf, as its first request loads it.
    "web": """
from project.wsgi import application
from django.urls import get_resolver
get_resolver().url_patterns
""",
}
REPORT = """
import json, sys
import pandas as pd
from modelregistry import loader, selectors
predictor = loader.get_predictor(selectors.resolve_version("house-prices"))
rows = pd.read_json(sys.stdin, orient="split")
imported = [name for name in json.loads(sys.argv[1]) if name in sys.modules]
print(json.dumps({"path": predictor.path, "imported": imported,
                  "predictions": predictor.predict(rows).tolist()}))
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("process", sorted(START))
def test_a_serving_process_serves_onnx_without_the_converters_dask_or_pytest(
    process, settings, request, process_env, house_model, house_rows
):
    settings.ONNX_ENABLED = True
    version = request.getfixturevalue("registered_version")  # converted at upload
    assert version.onnx_is_exact
    rows = house_rows
    done = subprocess.run(
        [sys.executable, "-c", START[process] + REPORT, json.dumps(NOT_FOR_SERVING)],
        cwd=ROOT,
        env={**process_env, "ONNX_ENABLED": "true"},
        input=rows.to_json(orient="split"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["path"] == "onnx" and report["imported"] == []
    assert report["predictions"] == pytest.approx(
        house_model.predict(rows).tolist(), rel=1e-9, abs=1e-9
    )


SKOPS_TRUSTS = """
import json, sys
{first}
from skops.io import _trusted_types
print(json.dumps({{"trusted": sorted(_trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES),
                  "dask": "dask" in sys.modules, "pytest": "pytest" in sys.modules}}))
"""


def test_skops_handed_the_estimators_trusts_what_its_own_discovery_trusts():
    def run(first: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", SKOPS_TRUSTS.format(first=first)],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout)

    alone = run("")  # skops lists them itself, with scikit-learn's all_estimators()
    handed = run("import modelregistry.sandbox.trust")
    assert handed["trusted"] == alone["trusted"] and len(alone["trusted"]) > 150
    assert alone["dask"] and alone["pytest"]  # what the walk costs
    assert not handed["dask"] and not handed["pytest"]
