"""STORAGE_BACKEND / STORAGE_OPTIONS choose where model artifacts are stored (settings.py)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SAVE_ARTIFACT = """
import django
django.setup()
from django.core.files.storage import storages
from modelregistry import storage
name, _ = storage.save_content(b"artifact bytes", folder="artifacts", extension="skops")
print(type(storages["default"]).__name__, storages["default"].path(name))
"""


def run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_artifacts_go_to_the_configured_storage_backend_with_its_options(tmp_path):
    done = run(
        SAVE_ARTIFACT,
        STORAGE_BACKEND="django.core.files.storage.FileSystemStorage",
        STORAGE_OPTIONS=f'{{"location": "{tmp_path}"}}',
    )
    assert done.returncode == 0, done.stderr[-2000:]
    backend, path = done.stdout.split()
    assert backend == "FileSystemStorage"
    assert Path(path).is_relative_to(tmp_path)
    assert Path(path).read_bytes() == b"artifact bytes"


def test_storage_options_that_are_not_json_stop_the_start_with_a_clear_error():
    done = run("import django; django.setup()", STORAGE_OPTIONS="{bucket: x}")
    assert done.returncode != 0
    assert "STORAGE_OPTIONS is not JSON" in done.stderr


def test_s3_storage_needs_a_bucket_and_takes_its_settings():
    done = run("import django; django.setup()", STORAGE_BACKEND="s3", S3_BUCKET="")
    assert done.returncode != 0 and "STORAGE_BACKEND=s3 needs S3_BUCKET" in done.stderr
    shown = run(
        "import django; django.setup(); from django.conf import settings; "
        "d = settings.STORAGES['default']; print(d['BACKEND'], d['OPTIONS']['bucket_name'], "
        "d['OPTIONS']['endpoint_url'])",
        STORAGE_BACKEND="s3",
        S3_BUCKET="jobs",
        S3_ENDPOINT_URL="http://127.0.0.1:9",
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == ["storages.backends.s3.S3Storage", "jobs", "http://127.0.0.1:9"]
