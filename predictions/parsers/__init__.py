"""Request bodies -> rows: one module per format, each `read_*(body, charset) -> ParsedInput`.

Parsers only read; which parser a request needs is `formats.py`'s table, and checking rows
against a schema is `validation.py`'s job. A problem with the body as a whole raises a
ServingError (`InvalidInput`, `MalformedRequest`, `EmptyInput` or `UnsupportedFormat`).
"""

from .common import BATCH, JSON_NAN, MLFLOW, SINGLE, JsonNaN, ParsedInput

__all__ = ["BATCH", "JSON_NAN", "MLFLOW", "SINGLE", "JsonNaN", "ParsedInput"]
