"""Settings read `.env` and the key scripts/setup generated, so `manage.py` works in a new
terminal, without scripts/run's environment: each test runs manage.py in a copy of the project."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ["core", "modelregistry", "predictions", "project", "templates", "manage.py"]
SHOW = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps([s.SECRET_KEY, s.LOG_LEVEL, s.MODEL_CACHE_SIZE, s.DEBUG]))"
)


@pytest.fixture
def checkout(tmp_path):
    """The code of this checkout, without its .env and var/."""
    for name in CODE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def manage_shell(checkout: Path, **env: str) -> list:
    """`python manage.py shell -c SHOW` in `checkout`, in a terminal's environment: none of the
    variables that scripts/setup exports or .env sets, plus `env`."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SECRET_KEY", "DJANGO_DEBUG", "LOG_LEVEL", "MODEL_CACHE_SIZE"}
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SHOW],
        cwd=checkout,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_generated_key_and_dot_env_are_read_and_the_environment_wins(checkout):
    (checkout / "var").mkdir()
    (checkout / "var" / "secret_key").write_text("generated-key-from-setup\n")
    (checkout / ".env").write_text(
        "# a comment\nLOG_LEVEL=WARNING\nMODEL_CACHE_SIZE=5\nNOT A VARIABLE LINE\n"
    )

    key, log_level, cache_size, debug = manage_shell(checkout, MODEL_CACHE_SIZE="3")

    assert key == "generated-key-from-setup"
    assert log_level == "WARNING"  # from .env
    assert cache_size == 3  # the environment wins over .env
    assert debug is False


def test_a_key_in_the_environment_or_dot_env_wins_over_the_generated_one(checkout):
    (checkout / "var").mkdir()
    (checkout / "var" / "secret_key").write_text("generated-key-from-setup\n")
    (checkout / ".env").write_text("DJANGO_SECRET_KEY=key-from-dot-env\n")

    assert manage_shell(checkout)[0] == "key-from-dot-env"
    assert manage_shell(checkout, DJANGO_SECRET_KEY="key-from-env")[0] == "key-from-env"


def test_no_key_anywhere_says_how_to_get_one(checkout):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=checkout,
        env={k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "DJANGO_DEBUG"}},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr
    assert "scripts/setup" in done.stderr
