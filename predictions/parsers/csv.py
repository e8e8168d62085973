"""CSV bodies -> rows: a header row, then one row per record; numbers arrive as text."""

import io
from collections import Counter

import pandas as pd

from ..errors import EmptyInput, MalformedRequest, UnsupportedFormat
from .common import BATCH, ParsedInput

CSV_DELIMITERS = (",", ";", "\t", "|")


def _csv_text(body: bytes, charset: str | None) -> str:
    encoding = charset or "utf-8"
    try:
        text = body.decode(
            "utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding
        )
    except LookupError:
        raise UnsupportedFormat(f"Unknown charset {encoding[:40]!r}.") from None
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"The CSV body is not valid {encoding} (byte {exc.start}); send UTF-8, or name the "
            "encoding in the Content-Type, e.g. 'text/csv; charset=latin-1'."
        ) from None
    return text


def read_csv(body: bytes, charset: str | None = None) -> ParsedInput:
    """A CSV with a header row; the delimiter (`,` `;` tab `|`) is the header's most common."""
    text = _csv_text(body, charset)
    header = text.split("\n", 1)[0]
    delimiter = max(CSV_DELIMITERS, key=header.count)
    names = [name.strip().strip('"') for name in header.rstrip("\r").split(delimiter)]
    if not header.strip():
        raise EmptyInput(
            "The CSV body is empty: it needs a header row and at least one row."
        ) from None
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise MalformedRequest(
            f"The CSV header repeats the column(s) {', '.join(duplicated)[:200]}."
        )
    try:
        # pandas reads UTF-8 bytes faster than the decoded text (once decoding has proved them).
        is_utf8 = (charset or "utf-8").lower().replace("_", "-") == "utf-8"
        source = io.BytesIO(body) if is_utf8 else io.StringIO(text)
        frame = pd.read_csv(
            source,
            sep=delimiter,
            skipinitialspace=True,
            encoding="utf-8-sig" if is_utf8 else None,
        )
    except pd.errors.ParserError as exc:
        raise MalformedRequest(f"The CSV body cannot be read: {str(exc).strip()[:200]}") from None
    except pd.errors.EmptyDataError:
        raise EmptyInput(
            "The CSV body is empty: it needs a header row and at least one row."
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas turns the first fields into an index when the first row has more fields than
        # the header: every value would land in the wrong column.
        raise MalformedRequest(
            "The CSV body cannot be read: its first row has more fields than the header "
            "(a delimiter at the end of each row?)."
        )
    return ParsedInput(frame, BATCH, text_numbers=True)
