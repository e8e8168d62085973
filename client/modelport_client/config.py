"""Where the `modelport` command finds its server and token.

The URL: `--url`, else `MODELPORT_URL`, else the config file's `url`, else
http://127.0.0.1:8000. The token: `MODELPORT_TOKEN`, else the config file's `token` (never an
argument: a command line shows in `ps` and in the shell's history). The config file is
`MODELPORT_CONFIG` if set, else `$XDG_CONFIG_HOME/modelport/config.toml` (by default
`~/.config/modelport/config.toml`):

    url = "http://127.0.0.1:8000"
    token = "mp_..."
"""

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelportError

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    config_path: Path


def config_path() -> Path:
    """The config file: MODELPORT_CONFIG, else $XDG_CONFIG_HOME/modelport/config.toml."""
    if os.environ.get("MODELPORT_CONFIG"):
        return Path(os.environ["MODELPORT_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "modelport" / "config.toml"


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelportError(
            status=None, code="config_invalid", title="Cannot read the config file",
            detail=f"{path}: {exc}",
        ) from None  # fmt: skip
    for key in ("url", "token"):
        if key in values and not isinstance(values[key], str):
            raise ModelportError(
                status=None, code="config_invalid", title="Cannot read the config file",
                detail=f"{path}: '{key}' must be a string.",
            )  # fmt: skip
    return values


def load_settings(url: str | None = None) -> Settings:
    """The server and token to use, from the option, the environment and the config file."""
    path = config_path()
    values = _read(path)
    return Settings(
        url=url or os.environ.get("MODELPORT_URL") or values.get("url") or DEFAULT_URL,
        token=os.environ.get("MODELPORT_TOKEN") or values.get("token") or None,
        config_path=path,
    )
