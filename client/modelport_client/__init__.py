"""A Python client for Modelport: `Client(url, token)`, and the `modelport` command ([cli])."""

from .client import Client, Progress
from .errors import ModelportError

__version__ = "0.1.0"
__all__ = ["Client", "ModelportError", "Progress", "__version__"]
