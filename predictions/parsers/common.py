"""What every parser returns: rows as a DataFrame, the request form, and JSON's NaN marker."""

import numpy as np
import pandas as pd

SINGLE, BATCH, MLFLOW = "single", "batch", "mlflow"
MIN_CELL_BUDGET = 1_000_000


class JsonNaN:
    """JSON's `NaN`, kept apart from null: it fails its row as not finite, even where the model
    takes a missing value (a float NaN would read as null)."""

    def __repr__(self) -> str:
        return "NaN"


JSON_NAN = JsonNaN()


class ParsedInput:
    """Rows as a DataFrame (columns as sent), the request form and the options it carried.

    A single JSON object keeps its `record` (the dict as sent) and builds its one-row `frame`
    only when asked: the fast path (`validation.check_record`) checks the record without pandas.
    """

    def __init__(
        self,
        frame: pd.DataFrame | None = None,
        form: str = BATCH,
        *,
        return_probabilities: bool = False,
        text_numbers: bool = False,
        record: dict | None = None,
        positional: str = "",
    ):
        self._frame = frame
        self.form = form
        self.return_probabilities = return_probabilities
        # True when numbers arrive as text (CSV): "3.5" is then a number, not a wrong type.
        self.text_numbers = text_numbers
        self.record = record
        # {"row", "field", "code", "message"} for rows that could not even be read as rows.
        self.row_errors: list[dict] = []
        # Per column, the rows that did not have the key at all (JSON rows only).
        self.absent: dict[str, np.ndarray] = {}
        # Rows sent as lists of values (MLflow's lists, an Open Inference [rows, features]
        # tensor): the columns are positions, named from the schema's feature order when the
        # rows are checked. The text says where they came from, for messages ("" = named).
        self.positional = positional
        # Columns whose type the request declared (Open Inference datatypes): name -> (kind,
        # datatype), kind "number" or "string". A request that declares its columns must name
        # exactly the model's features, each of the right kind (`validation.bind_columns`).
        self.declared: dict[str | int, tuple[str, str]] | None = None
        # "predict" or "predict_proba": what MLflow's `params.predict_method` asked for.
        self.predict_method = "predict"
        # What a protocol adapter keeps for its answer (an Open Inference `id`, `outputs`).
        self.protocol: dict = {}

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame([self.record] if self.record is not None else [])
        return self._frame

    @frame.setter
    def frame(self, frame: pd.DataFrame) -> None:
        self._frame, self.record = frame, None

    @property
    def rows(self) -> int:
        return 1 if self._frame is None and self.record is not None else len(self.frame)


def cell_budget(body: bytes) -> int:
    """The most values a body may make: one per byte (rows sharing their keys spend several
    bytes on each value), and never less than MIN_CELL_BUDGET."""
    return max(len(body), MIN_CELL_BUDGET)
