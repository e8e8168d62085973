"""What the OpenAPI schema (/api/schema/, Swagger UI at /api/docs/) says about predictions:
every request form with an example, the response, and each error code."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from core.pagination import PAGE_PARAMETERS, page_of

from . import formats
from .models import JobStatus
from .serializers import JobOutput, PredictOutput

ROW = {
    "med_inc": 3.2,
    "house_age": 25.0,
    "ave_rooms": 5.1,
    "ave_bedrms": 1.05,
    "population": 1100.0,
    "ave_occup": 2.9,
    "latitude": 36.5,
    "longitude": -119.6,
    "ocean_proximity": "INLAND",
}
OTHER_ROW = {**ROW, "med_inc": 7.9, "ocean_proximity": "NEAR BAY"}


class ProblemOutput(serializers.Serializer):
    """RFC 9457 problem details with our `code` and `request_id`."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable, machine-readable.")
    request_id = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField(), required=False)


SCHEMA_TYPES = {
    "object": OpenApiTypes.OBJECT,
    "string": OpenApiTypes.STR,
    "binary": OpenApiTypes.BINARY,
}


def request_bodies(**form_fields: dict) -> dict:
    """The request body of each input format, then multipart with its `file` (and fields)."""
    bodies = {item.media_types[0]: SCHEMA_TYPES[item.schema_type] for item in formats.FORMATS}
    bodies[formats.MULTIPART] = {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}, **form_fields},
        "required": ["file"],
    }
    return bodies


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(ProblemOutput, description=description)


ERROR_RESPONSES = {
    400: _problem(
        "`malformed_request` (JSON, CSV or Parquet that cannot be read, duplicate keys, deep "
        "nesting, a number of over 100 characters), `empty_input` (no rows), `invalid_input` "
        "(a wrong request shape, probabilities from a regressor)."
    ),
    401: _problem("`not_authenticated` or `authentication_failed`: send `Authorization: Token`."),
    404: _problem("`model_not_found`, `version_not_found`."),
    409: _problem("`no_default_version`: promote a version first, or pin one in the URL."),
    413: _problem(
        "`input_too_large`: over MAX_UPLOAD_BYTES (2 GiB), or a JSON document over "
        "JOB_MAX_JSON_BYTES (send JSON lines, CSV or Parquet instead)."
    ),
    415: _problem("`unsupported_format`: a Content-Type or file type we cannot read."),
    429: _problem("`throttled`: over PREDICT_THROTTLE_RATE for this token; see Retry-After."),
    503: _problem(
        "`model_unavailable` (the version failed or cannot load) or `queue_unavailable` (the job "
        "queue is down; nothing was stored); see Retry-After."
    ),
}

EXAMPLES = [
    OpenApiExample("One row (bare object)", value=ROW, request_only=True),
    OpenApiExample("Rows (bare array)", value=[ROW, OTHER_ROW], request_only=True),
    OpenApiExample("One row (inputs)", value={"inputs": ROW}, request_only=True),
    OpenApiExample("Rows (inputs)", value={"inputs": [ROW, OTHER_ROW]}, request_only=True),
    OpenApiExample(
        "Rows (columnar)",
        value={"columns": list(ROW), "data": [list(ROW.values()), list(OTHER_ROW.values())]},
        request_only=True,
    ),
    OpenApiExample(
        "MLflow dataframe_records", value={"dataframe_records": [ROW]}, request_only=True
    ),
    OpenApiExample(
        "MLflow dataframe_split",
        value={"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}},
        request_only=True,
    ),
    OpenApiExample("MLflow instances", value={"instances": [ROW]}, request_only=True),
    OpenApiExample(
        "Classifier with probabilities",
        value={
            "inputs": {
                "sepal length (cm)": 5.1,
                "sepal width (cm)": 3.5,
                "petal length (cm)": 1.4,
                "petal width (cm)": 0.2,
            },
            "return_probabilities": True,
        },
        request_only=True,
    ),
    OpenApiExample(
        "One row scored",
        value={
            "model": "house-prices",
            "version": 1,
            "prediction": 1.93,
            "errors": [],
            "rows": 1,
            "rows_failed": 0,
            "ignored_fields": [],
            "request_id": "5b0c7c1e9d7a4c55a3b0f4d1f2e3a4b5",
        },
        response_only=True,
        status_codes=["200"],
    ),
    OpenApiExample(
        "A batch with one bad row",
        value={
            "model": "house-prices",
            "version": 1,
            "predictions": [1.93, None],
            "errors": [
                {
                    "row": 1,
                    "field": "med_inc",
                    "code": "wrong_type",
                    "message": "row 1, 'med_inc': expected a number ('lots')",
                }
            ],
            "rows": 2,
            "rows_failed": 1,
            "ignored_fields": ["comment"],
            "request_id": "5b0c7c1e9d7a4c55a3b0f4d1f2e3a4b5",
        },
        response_only=True,
        status_codes=["200"],
    ),
]

predict_schema = extend_schema(
    summary="Predict",
    description=(
        "Score rows with the model's default version, or with the version in the URL. The body "
        "is JSON (a bare object is one row, a bare array is a batch; or `inputs`, "
        "`columns`+`data`, or MLflow's `dataframe_records`, `dataframe_split`, `instances`), "
        "`text/csv` (`,` `;` tab or `|`; UTF-8 or the `charset` you name), "
        "`application/x-ndjson`, `application/vnd.apache.parquet`, or `multipart/form-data` "
        "with one file in `file`. Single-row forms get `prediction`, the others `predictions`.\n\n"
        "Rows are checked against the version's schema; a bad row gets `null` and one entry in "
        "`errors` per bad field (codes: `missing`, `null`, `wrong_type`, `not_finite`, "
        "`unknown_category`, `too_long`, `invalid_row`) while the good rows are scored. The "
        "answer is 200 when a row was scored, 422 (`no_valid_rows`, the same body with the "
        "problem-details members) when none was."
    ),
    parameters=[
        OpenApiParameter(
            "probabilities",
            OpenApiTypes.BOOL,
            description="Classifiers: add per-class probabilities (like `return_probabilities`).",
        )
    ],
    request=request_bodies(),
    responses={
        200: PredictOutput,
        202: OpenApiResponse(
            JobOutput,
            description="Over PREDICT_SYNC_MAX_BYTES or PREDICT_SYNC_MAX_ROWS: a background job "
            "(its URL in `Location`).",
        ),
        422: OpenApiResponse(
            PredictOutput, description="No row could be scored: code `no_valid_rows`."
        ),
        **ERROR_RESPONSES,
    },
    examples=EXAMPLES,
)


job_schema = extend_schema(
    summary="Submit a job",
    description=(
        "Score a file in the background, whatever its size (up to MAX_UPLOAD_BYTES): "
        "multipart `file`, or a raw CSV, JSON lines, Parquet or JSON body. The version is "
        "pinned now. Answers 202 with the job and its URL in `Location`; follow the job at "
        "`/api/v1/jobs/{id}/`. `id_column` (query or form field) names an input column copied "
        "into the results. `callback_url` (query or form field) names a URL on a host in "
        "JOB_CALLBACK_ALLOWED_HOSTS that is POSTed the job's document when it ends, signed in "
        "`Modelport-Signature` (400 `callback_not_allowed` otherwise). The predict endpoint does "
        "the same for inputs over PREDICT_SYNC_MAX_BYTES or PREDICT_SYNC_MAX_ROWS."
    ),
    parameters=[
        OpenApiParameter("id_column", OpenApiTypes.STR, description="Input column to keep."),
        OpenApiParameter(
            "callback_url", OpenApiTypes.URI, description="Called back when the job ends."
        ),
    ],
    request=request_bodies(id_column={"type": "string"}, callback_url={"type": "string"}),
    responses={202: JobOutput, **ERROR_RESPONSES},
)


# A GET has no body: no 413 or 415, and its 400s are about the query.
QUERY_ERRORS = {
    **{status: ERROR_RESPONSES[status] for status in (401, 404, 409, 429, 503)},
    400: _problem(
        "`invalid_input`: a query parameter given twice, or probabilities from a regressor."
    ),
}

predict_query_schema = extend_schema(
    summary="Predict one row from the query string",
    description=(
        "A one-row try from a browser or a link: "
        "`?med_inc=3.2&house_age=25&...&ocean_proximity=INLAND`. Each value is typed by the "
        "version's schema (a number feature's text read as a number, text kept as text, an "
        "empty value a null), then the row is checked and scored exactly like the same row "
        "POSTed as a JSON object: the same answer (`prediction`), the same per-row errors "
        "(a feature not given is `missing`, text for a number is `wrong_type`) and 422 "
        "`no_valid_rows` when the row cannot be scored. Parameters the model does not use are "
        "listed in `ignored_fields`; `probabilities=true` adds a classifier's probabilities "
        "(unless the model has a feature of that name)."
    ),
    parameters=[
        OpenApiParameter(
            "features",
            {"type": "object", "additionalProperties": {"type": "string"}},
            OpenApiParameter.QUERY,
            style="form",
            explode=True,
            description="One query parameter per feature: `name=value`.",
        ),
        OpenApiParameter(
            "probabilities",
            OpenApiTypes.BOOL,
            description="Classifiers: add per-class probabilities.",
        ),
    ],
    responses={
        200: PredictOutput,
        422: OpenApiResponse(
            PredictOutput, description="The row cannot be scored: `no_valid_rows`."
        ),
        **QUERY_ERRORS,
    },
    examples=[example for example in EXAMPLES if example.response_only][:1],
)


job_list_schema = extend_schema(
    summary="List jobs",
    description=(
        "The caller's jobs, newest first, a page at a time (follow `next`). Staff see everyone's, "
        "or one user's with `owner`; anyone else asking for another user's gets 403. Filter by "
        "`model` (its name) and `status`."
    ),
    parameters=[
        *PAGE_PARAMETERS,
        OpenApiParameter("model", OpenApiTypes.STR, description="Only jobs of this model."),
        OpenApiParameter(
            "status",
            OpenApiTypes.STR,
            enum=[status.value for status in JobStatus],
            description="Only jobs in this state.",
        ),
        OpenApiParameter("owner", OpenApiTypes.STR, description="Staff: only this user's jobs."),
    ],
    responses={200: page_of(JobOutput)},
)
