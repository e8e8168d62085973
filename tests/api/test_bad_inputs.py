"""A catalogue of bad inputs to the predict endpoints, and what each one gets back.

Every case checks the status, the stable error `code` and the shape of the body: problem
details (`application/problem+json`) when the request as a whole is refused, the normal body
with `{"row", "field", "code", "message"}` entries in `errors` when rows fail one by one. Every
case also checks that the answer does not echo the input back, and that the next valid request
is still scored correctly.
"""

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelregistry import services as registry
from modelregistry.demo import iris_data, train_iris
from modelregistry.models import ModelVersion
from predictions.models import PredictionJob

pytestmark = pytest.mark.django_db

PROBLEM_TYPE = "application/problem+json"
ROW_ERROR_KEYS = {"row", "field", "code", "message"}
# Sent with nearly every bad input (as a field, a file, a column): no answer may repeat it.
CANARY = "canary-" + "".join(f"{i:04x}" for i in range(1200))
ECHO = CANARY[:128]  # answers may quote the start of a value or name, never this much of it
MAX_ANSWER_BYTES = 4096
DROP = object()  # in `changed`: remove the key from the row


# --- What is sent -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """A request body: bytes with a Content-Type, or multipart fields (a dict)."""

    data: bytes | dict
    content_type: str | None = "application/json"


def plain(rows: pd.DataFrame) -> list[dict]:
    """The rows as JSON-ready dicts (exact floats), each with the canary as an extra field."""
    records = orjson.loads(orjson.dumps(rows.to_dict("records"), option=orjson.OPT_SERIALIZE_NUMPY))
    return [{"note": CANARY, **record} for record in records]


def changed(rows: pd.DataFrame, changes: dict) -> list[dict]:
    """`plain(rows)` with {(row, field): value} applied (DROP removes the field)."""
    records = plain(rows)
    for (row, name), value in changes.items():
        if value is DROP:
            del records[row][name]
        else:
            records[row][name] = value
    return records


def split_form(records: list[dict]) -> dict:
    """Records in MLflow's columnar `dataframe_split` form."""
    columns = list(records[0])
    return {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in records]}}


def as_json(value) -> Req:
    return Req(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


def raw_json(rows: pd.DataFrame, changes: dict[tuple[int, str], str]) -> Req:
    """The rows as JSON with raw JSON text (NaN, 1e400, ...) in place of some values."""
    records = changed(rows, {key: f"@{key[0]}:{key[1]}@" for key in changes})
    text = orjson.dumps(records).decode()
    for (row, name), raw in changes.items():
        text = text.replace(f'"@{row}:{name}@"', raw)
    return Req(text.encode())


def json_lines(rows: pd.DataFrame, middle: str) -> Req:
    """Rows 0 and 2 as JSON lines, with `middle` as the line between them."""
    first, _, last = (orjson.dumps(record).decode() for record in plain(rows))
    return json_text("\n".join([first, middle, last]), "application/x-ndjson")


def json_text(text: str, content_type: str = "application/json") -> Req:
    return Req(text.encode(), content_type)


def one_row_text(rows: pd.DataFrame) -> str:
    """The first row as a JSON object, without its braces."""
    return orjson.dumps(plain(rows)[0]).decode()[1:-1]


def csv_text(rows: pd.DataFrame, **options) -> str:
    return rows.assign(note=CANARY)[["note", *rows.columns]].to_csv(index=False, **options)


def as_csv(text: str | bytes, content_type: str = "text/csv") -> Req:
    return Req(text.encode() if isinstance(text, str) else text, content_type)


def csv_lines(rows: pd.DataFrame) -> list[str]:
    return csv_text(rows).splitlines()


def parquet_bytes(data: pd.DataFrame | pa.Table) -> bytes:
    buffer = io.BytesIO()
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    pq.write_table(table, buffer)
    return buffer.getvalue()


def as_parquet(data: pd.DataFrame | pa.Table) -> Req:
    return Req(parquet_bytes(data), "application/vnd.apache.parquet")


def with_canary(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(note=CANARY)


def wide_csv(rows: pd.DataFrame, extra: int) -> str:
    """The rows as CSV with `extra` more columns the model does not use."""
    names = [f"extra_{i:04d}" for i in range(extra)]
    extras = pd.DataFrame(np.ones((len(rows), extra)), index=rows.index, columns=names)
    return pd.concat([rows, extras], axis=1).to_csv(index=False)


def upload(name: str, data: bytes, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def sparse_rows(rows: pd.DataFrame, count: int, own_keys: int) -> Req:
    """`count` rows that each carry `own_keys` fields no other row has (the canary in row 0)."""
    base = [{key: value for key, value in row.items() if key != "note"} for row in plain(rows)]
    records = [
        {**base[i % len(base)], **{f"id{i}_{k}": 1 for k in range(own_keys)}} for i in range(count)
    ]
    records[0]["note"] = CANARY
    return as_json(records)


# --- The models -------------------------------------------------------------------------------


@dataclass
class Target:
    """A registered model, the estimator behind it and three rows it scores."""

    name: str
    estimator: object
    rows: pd.DataFrame

    def url(self, path: str = "/predict") -> str:
        return f"/api/v1/models/{self.name}{path}"

    def expected(self) -> list:
        return self.estimator.predict(self.rows).tolist()


@pytest.fixture(scope="session")
def paint_model() -> Pipeline:
    """A regression whose encoder refuses unknown colours (handle_unknown="error")."""
    rng = np.random.default_rng(0)
    colors = rng.choice(["red", "green", "blue"], size=60)
    size = rng.uniform(1, 10, size=60)
    price = 2 * size + pd.Series(colors).map({"red": 1.0, "green": 2.0, "blue": 3.0}).to_numpy()
    prepare = ColumnTransformer(
        [
            ("size", StandardScaler(), ["size"]),
            ("color", OneHotEncoder(handle_unknown="error"), ["color"]),
        ]
    )
    model = Pipeline([("prepare", prepare), ("regressor", LinearRegression())])
    return model.fit(pd.DataFrame({"size": size, "color": colors}), price)


@pytest.fixture(scope="session")
def paint_artifact(paint_model) -> bytes:
    return skops.io.dumps(paint_model)


@pytest.fixture(scope="session")
def iris_model() -> Pipeline:
    return train_iris()


@pytest.fixture
def house(registered_version, house_model, house_rows) -> Target:
    return Target("house-prices", house_model, house_rows.head(3).reset_index(drop=True))


@pytest.fixture
def iris(db, iris_model) -> Target:
    version = registry.register_version(
        model_name="iris", artifact=skops.io.dumps(iris_model), filename="iris.skops"
    )
    registry.set_default_version(version=version)
    features = iris_data()[0].iloc[[0, 60, 120]].reset_index(drop=True)
    return Target("iris", iris_model, features)


@pytest.fixture
def paint(db, paint_model, paint_artifact) -> Target:
    version = registry.register_version(
        model_name="paint", artifact=paint_artifact, filename="paint.skops"
    )
    registry.set_default_version(version=version)
    rows = pd.DataFrame({"size": [2.0, 5.5, 8.0], "color": ["red", "green", "blue"]})
    return Target("paint", paint_model, rows)


def _schema_facts(target: Target) -> dict:
    version = ModelVersion.objects.get(registered_model__name=target.name, is_default=True)
    return {feature["name"]: feature for feature in version.input_schema["features"]}


def test_the_catalogue_models_have_the_schemas_the_cases_rely_on(house, iris, paint):
    house_features = _schema_facts(house)
    assert house_features["med_inc"]["nullable"] is True
    assert house_features["ocean_proximity"]["nullable"] is False
    assert house_features["ocean_proximity"]["handle_unknown"] == "ignore"
    assert not any(feature["nullable"] for feature in _schema_facts(iris).values())
    paint_features = _schema_facts(paint)
    assert paint_features["color"]["handle_unknown"] == "error"
    assert paint_features["color"]["categories"] == ["blue", "green", "red"]
    assert paint_features["size"]["nullable"] is False


# --- Sending and checking ---------------------------------------------------------------------


def send(client: APIClient, req: Req, url: str):
    if isinstance(req.data, dict):
        return client.post(url, req.data, format="multipart")
    return client.generic("POST", url, req.data, content_type=req.content_type)


def assert_no_echo(response) -> None:
    text = response.content.decode()
    assert len(response.content) <= MAX_ANSWER_BYTES, text[:500]
    assert ECHO not in text
    assert "Traceback" not in text


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:600]
    assert response["Content-Type"].startswith(PROBLEM_TYPE)
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body["title"] and body["detail"]
    assert body["request_id"] == response["X-Request-ID"]
    return body


def _same(got, expected) -> bool:
    if isinstance(expected, float):
        return got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    return got == expected


def assert_still_serves(client: APIClient, target: Target) -> None:
    """The next valid request (one row) is answered with the model's own prediction."""
    row = {key: value for key, value in plain(target.rows)[1].items() if key != "note"}
    response = send(client, as_json(row), target.url())
    assert response.status_code == 200, response.content[:600]
    assert _same(response.json()["prediction"], target.expected()[1])


def _error_keys(errors: list[dict]) -> list[tuple]:
    return sorted((error["row"], error["field"] or "", error["code"]) for error in errors)


# --- 1. Requests refused as a whole -----------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A request refused as a whole: problem details with `status` and `code`."""

    id: str
    build: Callable[[pd.DataFrame], Req]
    status: int
    code: str
    model: str = "house"  # whose rows `build` gets, and who must still answer afterwards
    path: str = "/predict"
    url: str = ""  # instead of the model's own URL
    client: str = "staff"
    settings: dict = field(default_factory=dict)
    setup: Callable | None = None  # called with pytest's `request`
    detail: str = ""  # a phrase the detail must contain
    header: tuple[str, str] | None = None


def _unpromoted_model(request) -> None:
    registry.register_version(
        model_name="draft",
        artifact=request.getfixturevalue("paint_artifact"),
        filename="paint.skops",
    )


def _failed_second_version(request) -> None:
    version = registry.register_version(
        model_name="house-prices",
        artifact=request.getfixturevalue("house_artifact"),
        filename="house.skops",
    )
    assert version.number == 2
    ModelVersion.objects.filter(pk=version.pk).update(
        status="failed", status_reason="the artifact no longer loads"
    )


def _dup_in_row(rows: pd.DataFrame, spacing: str = "") -> str:
    body = one_row_text(rows).replace('":', f'"{spacing}:')
    return "{" + f'"med_inc"{spacing}:1.5,' + body + "}"


REFUSED = [
    # JSON that cannot be read
    Refused("malformed JSON", lambda r: json_text(f'[{{"note": "{CANARY}", "med_inc": 3.1,,}}]'),
            400, "malformed_request"),
    Refused("truncated JSON", lambda r: Req(orjson.dumps(plain(r))[:-40]),
            400, "malformed_request"),
    Refused("JSON lines with one broken line", lambda r: json_lines(r, '{"med_inc": '),
            400, "malformed_request", detail="line 2"),
    Refused("JSON not valid UTF-8", lambda r: Req(
        orjson.dumps(plain(r)).replace(b"canary", b"\xff\xfe", 1)), 400, "malformed_request",
        detail="UTF-8"),
    Refused("duplicate key in a top-level object {a:1,a:2}", lambda r: json_text(_dup_in_row(r)),
            400, "malformed_request", detail="'med_inc'"),
    Refused("duplicate key inside a row of an array", lambda r: json_text(
        f"[{orjson.dumps(plain(r)[0]).decode()}, {_dup_in_row(r)}]"), 400, "malformed_request",
        detail="'med_inc'"),
    Refused('duplicate key with spaced colons "key" :', lambda r: json_text(_dup_in_row(r, " ")),
            400, "malformed_request", detail="'med_inc'"),
    Refused("duplicate key with a newline before the colon", lambda r: json_text(
        _dup_in_row(r, "\n")), 400, "malformed_request"),
    Refused("duplicate key spelt with a unicode escape", lambda r: json_text(
        '{"med\\u005finc":1.5,' + one_row_text(r) + "}"), 400, "malformed_request"),
    Refused("duplicate envelope key 'inputs'", lambda r: json_text(
        '{"inputs": [], "inputs": ' + orjson.dumps(plain(r)).decode() + "}"),
        400, "malformed_request", detail="'inputs'"),
    # Text that is not valid Unicode: an escaped lone surrogate, wherever it sits
    *[
        Refused(f"lone surrogate {where}", make, 400, "malformed_request", detail="Unicode")
        for where, make in [
            ("in a value", lambda r: raw_json(r, {(1, "ocean_proximity"): '"\\ud800"'})),
            ("in a key", lambda r: json_text('{"\\ud800": 1, "med_inc": 1.5}')),
            ("low half in a value", lambda r: raw_json(r, {(0, "ocean_proximity"): '"\\udc00"'})),
            ("in inputs", lambda r: json_text('{"inputs": {"x": "\\ud800"}}')),
            ("in columns", lambda r: json_text('{"columns": ["\\ud800"], "data": [[1]]}')),
            ("in data", lambda r: json_text('{"columns": ["a"], "data": [["\\ud800"]]}')),
            ("in dataframe_split", lambda r: json_text(
                '{"dataframe_split": {"columns": ["a"], "data": [["\\ud800"]]}}')),
            ("in dataframe_records", lambda r: json_text(
                '{"dataframe_records": [{"a": "\\ud800"}]}')),
            ("in instances", lambda r: json_text('{"instances": [{"a": "\\ud800"}]}')),
            ("in a JSON line", lambda r: json_lines(r, '{"ocean_proximity": "\\ud800"}')),
        ]
    ],
    Refused("5000 nested arrays", lambda r: json_text("[" * 5000 + CANARY),
            400, "malformed_request", detail="nested too deeply"),
    Refused("5000 nested arrays, closed", lambda r: json_text("[" * 5000 + "]" * 5000),
            400, "malformed_request", detail="nested too deeply"),
    Refused("5000 nested objects", lambda r: json_text('{"a":' * 5000 + "1" + "}" * 5000),
            400, "malformed_request", detail="nested too deeply"),
    Refused("a 500-digit integer", lambda r: raw_json(r, {(1, "med_inc"): "9" * 500}),
            400, "malformed_request", detail="longer than 100"),
    Refused("a 500-digit decimal", lambda r: raw_json(r, {(1, "med_inc"): "0." + "3" * 500}),
            400, "malformed_request", detail="longer than 100"),
    Refused("a 300-digit number in a single-row object", lambda r: json_text(
        '{"population": ' + "1" * 300 + ".5, " + one_row_text(r).replace('"population"', '"p"')
        + "}"), 400, "malformed_request", detail="longer than 100"),
    # JSON of the wrong shape
    Refused("top-level number", lambda r: json_text("42"), 400, "invalid_input", detail="a number"),
    Refused("top-level string", lambda r: as_json(CANARY), 400, "invalid_input", detail="a string"),
    Refused("top-level null", lambda r: json_text("null"), 400, "invalid_input", detail="null"),
    Refused("top-level boolean", lambda r: json_text("true"), 400, "invalid_input"),
    Refused("both 'inputs' and 'instances'", lambda r: as_json(
        {"inputs": plain(r), "instances": plain(r)}), 400, "invalid_input"),
    Refused("'columns' without 'data'", lambda r: as_json({"columns": list(r.columns)}),
            400, "invalid_input"),
    Refused("'data' without 'columns'", lambda r: as_json({"data": r.values.tolist()}),
            400, "invalid_input"),
    Refused("ragged 'data' rows", lambda r: as_json(
        {"columns": ["note", *r.columns], "data": [[CANARY, *r.iloc[0].tolist()], [CANARY, 1.0]]}),
        400, "invalid_input", detail="row 1 of 'data'"),
    Refused("'columns' naming a feature twice", lambda r: as_json(
        {"columns": ["med_inc", "med_inc"], "data": [[1.0, 2.0]], "note": CANARY}),
        400, "invalid_input"),
    Refused("'dataframe_split' that is a list", lambda r: as_json({"dataframe_split": plain(r)}),
            400, "invalid_input"),
    Refused("'inputs' that is a string", lambda r: as_json({"inputs": CANARY}),
            400, "invalid_input"),
    Refused("options without rows", lambda r: as_json({"return_probabilities": True}), 400,
            "invalid_input", detail="no rows"),
    Refused('return_probabilities: "yes"', lambda r: as_json(
        {"inputs": plain(r), "return_probabilities": "yes"}), 400, "invalid_input",
        detail="return_probabilities"),
    # Nothing to score
    Refused("empty batch []", lambda r: json_text("[]"), 400, "empty_input"),
    Refused("empty body", lambda r: Req(b""), 400, "empty_input"),
    Refused('{"inputs": []}', lambda r: as_json({"inputs": []}), 400, "empty_input"),
    Refused("'dataframe_split' with no rows", lambda r: as_json(
        {"dataframe_split": {"columns": list(r.columns), "data": []}}), 400, "empty_input"),
    Refused("JSON lines of blank lines", lambda r: json_text("\n \n\n", "application/x-ndjson"),
            400, "empty_input"),
    # Bodies we cannot read at all
    Refused("Content-Type text/plain", lambda r: json_text(CANARY, "text/plain"),
            415, "unsupported_format", detail="'text/plain'"),
    Refused("Content-Type application/xml", lambda r: json_text(
        f"<rows><note>{CANARY}</note></rows>", "application/xml"), 415, "unsupported_format"),
    Refused("no Content-Type", lambda r: Req(orjson.dumps(plain(r)), None),
            415, "unsupported_format", detail="no Content-Type"),
    Refused("Content-Type form-urlencoded", lambda r: json_text(
        f"note={CANARY}", "application/x-www-form-urlencoded"), 415, "unsupported_format"),
    # No model, version or default to score with
    Refused("unknown model", lambda r: as_json(plain(r)), 404, "model_not_found",
            url="/api/v1/models/no-such-model/predict"),
    Refused("unknown model, pinned version", lambda r: as_json(plain(r)), 404, "model_not_found",
            url="/api/v1/models/no-such-model/versions/1/predict"),
    Refused("unknown version", lambda r: as_json(plain(r)), 404, "version_not_found",
            path="/versions/99/predict"),
    Refused("model without a default version", lambda r: as_json(plain(r)),
            409, "no_default_version", url="/api/v1/models/draft/predict",
            setup=_unpromoted_model),
    Refused("pinned version that failed", lambda r: as_json(plain(r)), 503, "model_unavailable",
            path="/versions/2/predict", setup=_failed_second_version,
            header=("Retry-After", "30")),
    # Too much at once (over the synchronous bounds, a request becomes a job: not an error)
    Refused("body over MAX_UPLOAD_BYTES", lambda r: as_json(plain(r)), 413, "input_too_large",
            settings={"MAX_UPLOAD_BYTES": 4096}, detail="4096 bytes (MAX_UPLOAD_BYTES)"),
    Refused("multipart file over MAX_UPLOAD_BYTES", lambda r: Req(
        {"file": upload("rows.csv", csv_text(r).encode())}), 413, "input_too_large",
        settings={"MAX_UPLOAD_BYTES": 4096}, detail="4096 bytes (MAX_UPLOAD_BYTES)"),
    Refused("JSON document too large for a job", lambda r: as_json(plain(r)), 413,
            "input_too_large", detail="8192 bytes (JOB_MAX_JSON_BYTES)",
            settings={"PREDICT_SYNC_MAX_BYTES": 4096, "JOB_MAX_JSON_BYTES": 8192}),
    Refused("rows that each bring fields of their own", lambda r: sparse_rows(r, 1000, 5), 400,
            "invalid_input", detail="5010 different fields"),
    # Options the model cannot honour
    Refused("probabilities asked from a regressor", lambda r: as_json(
        {"inputs": plain(r), "return_probabilities": True}), 400, "invalid_input",
        detail="without probabilities"),
    Refused("probabilities asked from a regressor in the query", lambda r: as_json(plain(r)),
            400, "invalid_input", path="/versions/1/predict?probabilities=true"),
    # Who is asking
    Refused("no token", lambda r: as_json(plain(r)), 401, "not_authenticated",
            client="anonymous"),
    Refused("bad token", lambda r: as_json(plain(r)), 401, "authentication_failed",
            client="bad token"),
    # CSV
    Refused("CSV not UTF-8 and no charset", lambda r: as_csv(
        csv_text(r).encode().replace(b"canary", b"caf\xe9", 1)), 400, "malformed_request",
        detail="charset"),
    Refused("CSV with an unknown charset", lambda r: as_csv(
        csv_text(r), "text/csv; charset=klingon-8"), 415, "unsupported_format",
        detail="klingon-8"),
    Refused("CSV that does not decode in its charset", lambda r: as_csv(
        csv_text(r).replace("canary", "café", 1).encode(), "text/csv; charset=ascii"),
        400, "malformed_request"),
    Refused("CSV with a row of too many fields", lambda r: as_csv("\n".join(
        [*csv_lines(r)[:3], csv_lines(r)[3] + ",9.5"])), 400, "malformed_request",
        detail="Expected 10 fields"),
    Refused("CSV whose first row has too many fields", lambda r: as_csv("\n".join(
        [csv_lines(r)[0], csv_lines(r)[1] + ",9.5", *csv_lines(r)[2:]])),
        400, "malformed_request", detail="first row"),
    Refused("CSV with a delimiter at the end of every row", lambda r: as_csv("\n".join(
        [csv_lines(r)[0], *(line + "," for line in csv_lines(r)[1:])])),
        400, "malformed_request"),
    Refused("CSV with a duplicated header", lambda r: as_csv(csv_text(
        r.assign(dup=1.0)).replace(",dup", ",med_inc", 1)), 400, "malformed_request",
        detail="med_inc"),
    Refused("CSV with a header only", lambda r: as_csv(csv_lines(r)[0] + "," + CANARY + "\n"),
            400, "empty_input"),
    Refused("CSV of blank lines", lambda r: as_csv("\n\n\n"), 400, "empty_input"),
    Refused("CSV with an unclosed quote", lambda r: as_csv(
        csv_text(r).replace("canary", '"canary', 1)), 400, "malformed_request"),
    # Parquet
    Refused("not a Parquet file", lambda r: Req(CANARY.encode(), "application/parquet"),
            400, "malformed_request"),
    Refused("Parquet cut short", lambda r: Req(
        parquet_bytes(with_canary(r))[:-100], "application/vnd.apache.parquet"),
        400, "malformed_request"),
    Refused("Parquet with a column named twice", lambda r: as_parquet(pa.Table.from_arrays(
        [pa.array([1.0]), pa.array([2.0]), pa.array([CANARY])],
        names=["med_inc", "med_inc", "note"])), 400, "malformed_request"),
    Refused("Parquet with no rows", lambda r: as_parquet(with_canary(r).head(0)),
            400, "empty_input"),
    # multipart
    Refused("multipart without a 'file' field", lambda r: Req(
        {"rows": upload("rows.csv", csv_text(r).encode())}), 400, "invalid_input",
        detail="'file'"),
    Refused("multipart with two files", lambda r: Req(
        {"file": [upload("a.csv", csv_text(r).encode()), upload("b.csv", csv_text(r).encode())]}),
        400, "invalid_input"),
    *[
        Refused(f"multipart with 1000 files{where}", lambda r: Req(
            {f"f{i}": upload(f"{i}.csv", b"a\n1\n") for i in range(1000)}),
            400, "malformed_request", detail="more than 100 files", path=path)
        for where, path in [("", "/predict"), (" as a job", "/jobs")]
    ],
    Refused("multipart with 1100 fields", lambda r: Req({f"f{i}": "1" for i in range(1100)}),
            400, "malformed_request", detail="more than 1000 fields"),
    Refused("multipart 'file' sent as text", lambda r: Req({"file": CANARY}), 400, "invalid_input"),
    Refused("multipart file with an unknown extension", lambda r: Req(
        {"file": upload("rows.txt", csv_text(r).encode())}), 415, "unsupported_format",
        detail="rows.txt"),
    Refused("multipart with an empty file", lambda r: Req(
        {"file": upload("rows.csv", b"", "text/csv")}), 400, "empty_input"),
    Refused("multipart without a boundary", lambda r: Req(
        b"--x\r\n" + CANARY.encode(), "multipart/form-data"), 400, "malformed_request"),
]  # fmt: skip


CLIENTS = {
    "anonymous": lambda: APIClient(),
    "bad token": lambda: _with_token("not-a-real-token"),
}


def _with_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_a_bad_request_is_refused_with_a_stable_code_and_the_next_one_is_served(
    case, request, api_client, settings
):
    target = request.getfixturevalue(case.model)
    for name, value in case.settings.items():
        setattr(settings, name, value)
    if case.setup:
        case.setup(request)
    client = CLIENTS[case.client]() if case.client in CLIENTS else api_client
    response = send(client, case.build(target.rows), case.url or target.url(case.path))
    body = assert_problem(response, case.status, case.code)
    assert case.detail in body["detail"]
    assert "predictions" not in body and "prediction" not in body
    if case.header:
        assert response[case.header[0]] == case.header[1]
    assert_no_echo(response)
    assert_still_serves(api_client, target)


# --- 2. Rows that fail one by one -------------------------------------------------------------


@dataclass(frozen=True)
class BadRows:
    """Rows that fail alone: `errors` lists (row, field, code); the other rows are scored."""

    id: str
    build: Callable[[pd.DataFrame], Req]
    errors: list[tuple[int, str, str]]
    model: str = "house"
    path: str = "/predict"
    settings: dict = field(default_factory=dict)
    single: bool = False  # a one-row form, answered with `prediction`


def _text_in_row(rows: pd.DataFrame, row: int, name: str, value: str) -> str:
    lines = csv_lines(rows)
    header = lines[0].split(",")
    fields = lines[row + 1].split(",")
    fields[header.index(name)] = value
    lines[row + 1] = ",".join(fields)
    return "\n".join(lines) + "\n"


def _short_row(rows: pd.DataFrame, row: int, keep: int) -> str:
    lines = csv_lines(rows)
    lines[row + 1] = ",".join(lines[row + 1].split(",")[:keep])
    return "\n".join(lines) + "\n"


EVERY_ROW = range(3)
HOUSE_FEATURES = [
    "med_inc", "house_age", "ave_rooms", "ave_bedrms", "population", "ave_occup", "latitude",
    "longitude", "ocean_proximity",
]  # fmt: skip

BAD_ROWS = [
    # Numbers that are not finite
    BadRows("NaN", lambda r: raw_json(r, {(1, "med_inc"): "NaN"}), [(1, "med_inc", "not_finite")]),
    BadRows("Infinity", lambda r: raw_json(r, {(1, "house_age"): "Infinity"}),
            [(1, "house_age", "not_finite")]),
    BadRows("-Infinity", lambda r: raw_json(r, {(2, "latitude"): "-Infinity"}),
            [(2, "latitude", "not_finite")]),
    BadRows("1e400", lambda r: raw_json(r, {(0, "population"): "1e400"}),
            [(0, "population", "not_finite")]),
    BadRows("-1e400 on a pinned version", lambda r: raw_json(r, {(1, "ave_rooms"): "-1e400"}),
            [(1, "ave_rooms", "not_finite")], path="/versions/1/predict"),
    BadRows("NaN in every row", lambda r: raw_json(r, {(i, "ave_occup"): "NaN" for i in EVERY_ROW}),
            [(i, "ave_occup", "not_finite") for i in EVERY_ROW]),
    BadRows("NaN where the model takes no null", lambda r: raw_json(
        r, {(1, "petal width (cm)"): "NaN"}), [(1, "petal width (cm)", "not_finite")],
        model="iris"),
    # Values of the wrong type
    BadRows("string in a numeric column", lambda r: as_json(changed(r, {(1, "med_inc"): "3.5"})),
            [(1, "med_inc", "wrong_type")]),
    BadRows("boolean in a numeric column", lambda r: as_json(changed(r, {(1, "house_age"): True})),
            [(1, "house_age", "wrong_type")]),
    BadRows("boolean in every row of a numeric column", lambda r: as_json(
        changed(r, {(i, "house_age"): False for i in EVERY_ROW})),
        [(i, "house_age", "wrong_type") for i in EVERY_ROW]),
    BadRows("object as a feature value", lambda r: as_json(
        changed(r, {(2, "med_inc"): {"value": CANARY}})), [(2, "med_inc", "wrong_type")]),
    BadRows("list as a feature value", lambda r: as_json(
        changed(r, {(0, "latitude"): [1.0, CANARY]})), [(0, "latitude", "wrong_type")]),
    BadRows("a list nested 900 deep as a feature value", lambda r: raw_json(
        r, {(1, "longitude"): "[" * 900 + "1" + "]" * 900}), [(1, "longitude", "wrong_type")]),
    BadRows("number in a text feature", lambda r: as_json(
        changed(r, {(1, "ocean_proximity"): 5})), [(1, "ocean_proximity", "wrong_type")]),
    BadRows("numbers in every row of a text feature", lambda r: as_json(
        changed(r, {(i, "ocean_proximity"): 5 for i in EVERY_ROW})),
        [(i, "ocean_proximity", "wrong_type") for i in EVERY_ROW]),
    BadRows("object in a text feature", lambda r: as_json(
        changed(r, {(0, "ocean_proximity"): {"a": 1}})), [(0, "ocean_proximity", "wrong_type")]),
    # Values that are not there
    BadRows("missing feature key", lambda r: as_json(changed(r, {(1, "latitude"): DROP})),
            [(1, "latitude", "missing")]),
    BadRows("empty row object", lambda r: as_json([plain(r)[0], {}, plain(r)[2]]),
            [(1, name, "missing") for name in HOUSE_FEATURES]),
    BadRows("null where the model takes no null (iris)", lambda r: as_json(
        changed(r, {(1, "sepal length (cm)"): None})), [(1, "sepal length (cm)", "null")],
        model="iris"),
    BadRows("null in a text feature the encoder cannot take", lambda r: as_json(
        changed(r, {(2, "ocean_proximity"): None})), [(2, "ocean_proximity", "null")]),
    BadRows("null size in the paint model", lambda r: as_json(changed(r, {(0, "size"): None})),
            [(0, "size", "null")], model="paint"),
    # Values the model cannot take
    BadRows("unknown category where the encoder refuses one", lambda r: as_json(
        changed(r, {(1, "color"): "mauve"})), [(1, "color", "unknown_category")], model="paint"),
    BadRows("unknown category in every row", lambda r: as_json(
        changed(r, {(i, "color"): "RED" for i in EVERY_ROW})),
        [(i, "color", "unknown_category") for i in EVERY_ROW], model="paint"),
    BadRows("number as a category", lambda r: as_json(changed(r, {(2, "color"): 3})),
            [(2, "color", "wrong_type")], model="paint"),
    BadRows("over-long string", lambda r: as_json(changed(r, {(1, "ocean_proximity"): CANARY})),
            [(1, "ocean_proximity", "too_long")], settings={"PREDICT_MAX_STRING_LENGTH": 100}),
    # Rows that are not rows
    BadRows("a number as a row", lambda r: as_json([plain(r)[0], 42, plain(r)[2]]),
            [(1, "", "invalid_row")]),
    BadRows("a string and a list as rows", lambda r: as_json(
        [plain(r)[0], CANARY, [1, 2]]), [(1, "", "invalid_row"), (2, "", "invalid_row")]),
    BadRows("only non-object rows", lambda r: as_json({"instances": [None, "x", 3.5]}),
            [(i, "", "invalid_row") for i in EVERY_ROW]),
    BadRows("every row bad", lambda r: as_json(
        changed(r, {(i, "med_inc"): "lots" for i in EVERY_ROW})),
        [(i, "med_inc", "wrong_type") for i in EVERY_ROW]),
    BadRows("one bad row sent as a single object", lambda r: as_json(
        changed(r, {(0, "med_inc"): DROP})[0]), [(0, "med_inc", "missing")], single=True),
    BadRows("a bad row in 'dataframe_split'", lambda r: as_json(
        split_form(changed(r, {(1, "med_inc"): "x"}))), [(1, "med_inc", "wrong_type")]),
    BadRows("a non-object row in JSON lines", lambda r: json_lines(r, "[1, 2]"),
            [(1, "", "invalid_row")]),
    # CSV
    BadRows("CSV text value in a numeric column", lambda r: as_csv(
        _text_in_row(r, 1, "med_inc", "lots")), [(1, "med_inc", "wrong_type")]),
    BadRows("CSV 'inf' in a numeric column", lambda r: as_csv(
        _text_in_row(r, 2, "house_age", "inf")), [(2, "house_age", "not_finite")]),
    BadRows("CSV over-long text", lambda r: as_csv(_text_in_row(r, 0, "ocean_proximity", CANARY)),
            [(0, "ocean_proximity", "too_long")], settings={"PREDICT_MAX_STRING_LENGTH": 100}),
    # A short CSV row cannot be told from one with empty fields: its missing trailing fields
    # read as nulls, accepted where the model takes a null (house numbers) and refused where
    # it does not (the encoded ocean_proximity).
    BadRows("CSV row with too few fields", lambda r: as_csv(_short_row(r, 1, 4)),
            [(1, "ocean_proximity", "null")]),
    BadRows("CSV row with too few fields (iris)", lambda r: as_csv(_short_row(r, 1, 3)),
            [(1, "petal length (cm)", "null"), (1, "petal width (cm)", "null")], model="iris"),
    BadRows("CSV empty field where the model takes no null", lambda r: as_csv(
        _text_in_row(r, 0, "sepal width (cm)", "")), [(0, "sepal width (cm)", "null")],
        model="iris"),
    BadRows("CSV unknown category", lambda r: as_csv(_text_in_row(r, 2, "color", "teal")),
            [(2, "color", "unknown_category")], model="paint"),
    # Parquet
    BadRows("Parquet string column where a number is expected", lambda r: as_parquet(
        with_canary(r).astype({"med_inc": str})),
        [(i, "med_inc", "wrong_type") for i in EVERY_ROW]),
    BadRows("Parquet boolean column where a number is expected", lambda r: as_parquet(
        with_canary(r).assign(house_age=True)),
        [(i, "house_age", "wrong_type") for i in EVERY_ROW]),
    BadRows("Parquet missing column", lambda r: as_parquet(with_canary(r).drop(columns="latitude")),
            [(i, "latitude", "missing") for i in EVERY_ROW]),
    BadRows("Parquet null where the model takes no null", lambda r: as_parquet(
        with_canary(r).assign(**{"sepal width (cm)": r["sepal width (cm)"].mask(r.index == 1)})),
        [(1, "sepal width (cm)", "null")], model="iris"),
    # multipart
    BadRows("multipart CSV file with a bad row", lambda r: Req({"file": upload(
        "rows.csv", _text_in_row(r, 1, "med_inc", "lots").encode())}),
        [(1, "med_inc", "wrong_type")]),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_ROWS, ids=[case.id for case in BAD_ROWS])
def test_bad_rows_fail_alone_with_a_code_per_field_and_the_next_request_is_served(
    case, request, api_client, settings
):
    target = request.getfixturevalue(case.model)
    for name, value in case.settings.items():
        setattr(settings, name, value)
    response = send(api_client, case.build(target.rows), target.url(case.path))
    bad = {row for row, _, _ in case.errors}
    every_row_bad = bad == set(range(1 if case.single else len(target.rows)))
    assert response.status_code == (422 if every_row_bad else 200), response.content[:600]
    problem = "application/problem+json" if every_row_bad else "application/json"
    assert response["Content-Type"].startswith(problem)
    body = response.json()
    assert all(set(error) == ROW_ERROR_KEYS for error in body["errors"])
    assert all(error["message"].startswith(f"row {error['row']}") for error in body["errors"])
    assert _error_keys(body["errors"]) == sorted(case.errors)
    assert body["rows_failed"] == len(bad)
    expected = target.expected()
    if case.single:
        assert body["rows"] == 1 and body["prediction"] is None
    else:
        assert body["rows"] == len(target.rows)
        for row, value in enumerate(body["predictions"]):
            assert value is None if row in bad else _same(value, expected[row])
    if every_row_bad:
        assert body["code"] == "no_valid_rows" and body["status"] == 422
        assert body["type"].endswith("/no_valid_rows") and body["detail"]
    else:
        assert "code" not in body
    assert_no_echo(response)
    assert_still_serves(api_client, target)


# --- 3. Odd but valid input -------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """Input that looks odd but is fine: every row is scored, nothing is echoed."""

    id: str
    build: Callable[[pd.DataFrame], Req]
    model: str = "house"
    ignored: list[str] = field(default_factory=lambda: ["note"])


ACCEPTED = [
    Accepted("CSV with ';' delimiters", lambda r: as_csv(csv_text(r, sep=";"))),
    Accepted("CSV with tab delimiters", lambda r: as_csv(csv_text(r, sep="\t"))),
    Accepted("CSV with a byte order mark", lambda r: as_csv(
        b"\xef\xbb\xbf" + csv_text(r).encode())),
    Accepted("CSV with every value quoted, '3.5' as text", lambda r: as_csv(
        csv_text(r, quoting=csv.QUOTE_ALL))),
    Accepted("CSV with Windows line ends", lambda r: as_csv(csv_text(r, lineterminator="\r\n"))),
    Accepted("CSV in latin-1 with its charset", lambda r: as_csv(
        csv_text(r).replace("canary", "café", 1).encode("latin-1"), "text/csv; charset=latin-1")),
    Accepted("JSON with a byte order mark", lambda r: Req(
        b"\xef\xbb\xbf" + orjson.dumps(plain(r)))),
    Accepted('JSON with ": inside a string value', lambda r: as_json(
        changed(r, {(0, "note"): 'a": "b'}))),
    Accepted("JSON with spaced colons and no duplicate", lambda r: json_text(
        orjson.dumps(plain(r)).decode().replace('":', '" :'))),
    Accepted("a 100-character number", lambda r: raw_json(r, {(1, "note"): "0." + "1" * 98})),
    Accepted("an unknown field with a huge name", lambda r: as_json(
        changed(r, {(0, CANARY): 1})), ignored=["note", CANARY[:97] + "..."]),
    Accepted("5000 unknown CSV columns", lambda r: as_csv(wide_csv(r, 5000)),
             ignored=[f"extra_{i:04d}" for i in range(100)]),
]  # fmt: skip


@pytest.mark.parametrize("case", ACCEPTED, ids=[case.id for case in ACCEPTED])
def test_odd_but_valid_input_is_scored_and_not_echoed(case, request, api_client):
    target = request.getfixturevalue(case.model)
    response = send(api_client, case.build(target.rows), target.url())
    assert response.status_code == 200, response.content[:600]
    body = response.json()
    assert body["errors"] == [] and body["rows_failed"] == 0
    assert body["predictions"] == pytest.approx(target.expected(), rel=1e-9, abs=1e-9)
    assert body["ignored_fields"] == case.ignored
    assert_no_echo(response)
    assert_still_serves(api_client, target)


@pytest.mark.parametrize(
    "method, url",
    [
        ("post", "/api/v1/models/house-prices/predict?probabilities=true&probabilities=false"),
        ("post", "/api/v1/models/house-prices/jobs?id_column=a&id_column=b"),
        ("get", "/api/v1/models/?page=1&page=2"),
    ],
)
def test_a_query_parameter_given_twice_is_refused(method, url, api_client, registered_version):
    if method == "get":
        answer = api_client.get(url)
    else:
        answer = api_client.post(url, data=b"{}", content_type="application/json")
    assert answer.status_code == 400 and answer["Content-Type"] == "application/problem+json"
    assert answer.json()["code"] == "invalid_input"
    assert "more than once" in answer.json()["detail"]
    assert not PredictionJob.objects.exists()
