"""What the OpenAPI schema (/api/schema/, Swagger UI at /api/docs/) says about predictions:
every request form with an example, the response, and each error code (dataset runs:
`datasets.py`)."""

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from core.openapi import error
from core.pagination import PAGE_PARAMETERS, page_of

from .. import formats
from ..models import JobStatus
from ..serializers import JobOutput, PredictOutput

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


ERROR_RESPONSES = {
    400: error(
        "`malformed_request` (JSON, CSV or Parquet that cannot be read, duplicate keys, deep "
        "nesting, a number of over 100 characters), `empty_input` (no rows), `invalid_input` "
        "(a wrong request shape, probabilities from a regressor)."
    ),
    401: error("`not_authenticated` or `authentication_failed`: send `Authorization: Token`."),
    404: error("`model_not_found`, `version_not_found`."),
    409: error("`no_default_version`: promote a version first, or pin one in the URL."),
    413: error(
        "`input_too_large`: over MAX_UPLOAD_BYTES (2 GiB), or a JSON document over "
        "JOB_MAX_JSON_BYTES (send JSON lines, CSV or Parquet instead)."
    ),
    415: error("`unsupported_format`: a Content-Type or file type we cannot read."),
    429: error("`throttled`: over PREDICT_THROTTLE_RATE for this token; see Retry-After."),
    503: error(
        "`model_unavailable` (the version failed or cannot load) or `queue_unavailable` (the job "
        "queue is down; nothing was stored); see Retry-After."
    ),
}


def _csv_line(values) -> str:
    return ",".join(str(value) for value in values) + "\n"


CSV_TEXT = _csv_line(ROW) + _csv_line(ROW.values()) + _csv_line(OTHER_ROW.values())
JSON_LINES = "".join(orjson.dumps(row).decode() + "\n" for row in (ROW, OTHER_ROW))

# One example for each body that is not JSON: drf-spectacular shows each under its media type.
FILE_EXAMPLES = [
    OpenApiExample("CSV", value=CSV_TEXT, media_type="text/csv", request_only=True),
    OpenApiExample(
        "JSON lines", value=JSON_LINES, media_type="application/x-ndjson", request_only=True
    ),
    OpenApiExample(
        "Parquet file",
        summary="A Parquet file as the body",
        description="`curl -H 'Content-Type: application/vnd.apache.parquet' "
        "--data-binary @rows.parquet ...`: the file's bytes, one row per record.",
        media_type="application/vnd.apache.parquet",
        request_only=True,
    ),
    OpenApiExample(
        "File upload",
        summary="A CSV, JSON, JSON lines or Parquet file in the field `file`",
        description="`curl -F file=@rows.csv ...`: the format comes from the file's type, "
        "or else its name (.csv, .json, .jsonl/.ndjson, .parquet/.pq).",
        value={"file": "rows.csv"},
        media_type=formats.MULTIPART,
        request_only=True,
    ),
]

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
    examples=EXAMPLES + FILE_EXAMPLES,
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
    examples=[
        OpenApiExample("Rows (bare array)", value=[ROW, OTHER_ROW], request_only=True),
        *FILE_EXAMPLES,
    ],
)


JOB_NOT_FOUND = error("`job_not_found`: no such job, or not yours (staff see every job).")
RESULTS_NOT_READY = error("`results_not_ready`: the job has not succeeded (yet).")

job_detail_schema = extend_schema(
    summary="A job",
    description="The job's state, counts and links; poll it until `status` is finished.",
    responses={200: JobOutput, 404: JOB_NOT_FOUND},
)

job_cancel_schema = extend_schema(
    summary="Cancel a job",
    description="Stop a queued or running job; its rows done so far are discarded.",
    request=None,
    responses={
        200: JobOutput,
        404: JOB_NOT_FOUND,
        409: error("`job_finished`: the job has already finished."),
    },
)


class ResultRowOutput(serializers.Serializer):
    row = serializers.IntegerField(help_text="Position of the row in the input, from 0.")
    prediction = serializers.JSONField(allow_null=True, help_text="Null for a failed row.")


class ResultsPageOutput(serializers.Serializer):
    results = ResultRowOutput(
        many=True, help_text="Rows in input order; with `id_column`, that column too."
    )
    next = serializers.CharField(allow_null=True, help_text="The next page's URL, or null.")
    rows_total = serializers.IntegerField()


job_results_schema = extend_schema(
    summary="A job's results, page by page",
    parameters=[
        OpenApiParameter(
            "cursor", OpenApiTypes.INT, description="The last row number already read (-1)."
        ),
        OpenApiParameter(
            "page_size", OpenApiTypes.INT, description="Rows per page (RESULTS_PAGE_SIZE)."
        ),
    ],
    responses={200: ResultsPageOutput, 404: JOB_NOT_FOUND, 409: RESULTS_NOT_READY},
)

job_download_schema = extend_schema(
    summary="Download a job's results",
    description="The whole result as one file: columns `row`, `prediction` (and the `id_column`).",
    parameters=[
        OpenApiParameter("format", OpenApiTypes.STR, enum=["csv", "parquet"], default="csv")
    ],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The results."),
        (200, "application/vnd.apache.parquet"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The results."
        ),
        404: JOB_NOT_FOUND,
        409: RESULTS_NOT_READY,
    },
)

job_errors_schema = extend_schema(
    summary="Download a job's row errors",
    description="One CSV line per bad field: `row`, `field`, `code`, `message`.",
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The row errors."),
        404: JOB_NOT_FOUND,
        409: RESULTS_NOT_READY,
    },
)


# A GET has no body: no 413 or 415, and its 400s are about the query.
QUERY_ERRORS = {
    **{status: ERROR_RESPONSES[status] for status in (401, 404, 409, 429, 503)},
    400: error(
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
    operation_id="api_v1_jobs_list",
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
