"""What the OpenAPI schema says about the Open Inference V2 and MLflow endpoints (tag
`protocols`)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema

from core.openapi import error

from ..openapi import ERROR_RESPONSES, ROW
from ..serializers import JobOutput

TAGS = ["protocols"]
FEATURES = list(ROW)


def _tensor(name, value):
    datatype = "BYTES" if isinstance(value, str) else "FP64"
    return {"name": name, "shape": [1, 1], "datatype": datatype, "data": [value]}


OIP_EXAMPLES = [
    OpenApiExample(
        "One input per feature",
        value={"id": "42", "inputs": [_tensor(name, value) for name, value in ROW.items()]},
        request_only=True,
    ),
    OpenApiExample(
        "MLServer pandas codec",
        value={
            "parameters": {"content_type": "pd"},
            "inputs": [_tensor(name, value) for name, value in ROW.items()],
        },
        request_only=True,
    ),
    OpenApiExample(
        "One [rows, features] tensor (all-numeric models)",
        value={
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2],
                }
            ],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        },
        request_only=True,
    ),
    OpenApiExample(
        "Scored",
        value={
            "model_name": "house-prices",
            "model_version": "1",
            "id": "42",
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [1], "data": [1.93]}],
            "parameters": {"rows": 1, "rows_failed": 0, "request_id": "5b0c7c1e9d7a4c55"},
        },
        response_only=True,
        status_codes=["200"],
    ),
]

OIP_ERRORS = {
    **ERROR_RESPONSES,
    400: error(
        "Problem+json (with the protocol's `error` member) naming the input: "
        "`wrong_shape`, `wrong_datatype`, `unknown_input`, `missing_input`, `unknown_output`, "
        "`invalid_input`, `malformed_request` (also binary tensor data, which is not read).",
    ),
}

live_schema = extend_schema(
    tags=TAGS, summary="V2 server live", responses={200: OpenApiTypes.OBJECT}, auth=[]
)
ready_schema = extend_schema(
    tags=TAGS,
    summary="V2 server ready",
    description="200 when the database, Redis and every default model are usable (as /readyz).",
    responses={200: OpenApiTypes.OBJECT, 503: ERROR_RESPONSES[503]},
    auth=[],
)
server_metadata_schema = extend_schema(
    tags=TAGS, summary="V2 server metadata", responses={200: OpenApiTypes.OBJECT}, auth=[]
)
model_metadata_schema = extend_schema(
    tags=TAGS,
    summary="V2 model metadata",
    description="Inputs (one per feature: name, datatype FP64 or BYTES, shape [-1]) from the "
    "version's schema; outputs `predict` and, for classifiers, `predict_proba`.",
    responses={200: OpenApiTypes.OBJECT, **{s: ERROR_RESPONSES[s] for s in (404, 409, 429)}},
)
model_ready_schema = extend_schema(
    tags=TAGS,
    summary="V2 model ready",
    responses={
        200: OpenApiTypes.OBJECT,
        **{status: ERROR_RESPONSES[status] for status in (404, 409, 429, 503)},
    },
)
infer_schema = extend_schema(
    tags=TAGS,
    summary="V2 infer",
    description=(
        "Score an Open Inference Protocol V2 request with the model's default version or the "
        "one in the URL. Inputs: one tensor per feature (shape [rows] or [rows, 1]; BYTES for "
        "text, BOOL, UINT*, INT*, FP16, FP32, FP64 for numbers), MLServer's pandas codec "
        '(`"parameters": {"content_type": "pd"}`), or one [rows, features] tensor in the '
        "model's feature order (all-numeric models). Outputs: `predict`, and `predict_proba` "
        "(classifiers) when asked in `outputs`. A row with a bad value is null in each output "
        "and described in `parameters.errors` (a JSON text); an oversized body becomes a job "
        "(202 with `Location`), as on the native predict endpoint."
    ),
    request=OpenApiTypes.OBJECT,
    responses={
        200: OpenApiTypes.OBJECT,
        202: OpenApiResponse(JobOutput, description="Over the synchronous bounds: a job."),
        422: error("No row could be scored."),
        **OIP_ERRORS,
    },
    examples=OIP_EXAMPLES,
)

MLFLOW_EXAMPLES = [
    OpenApiExample(
        "dataframe_split",
        value={"dataframe_split": {"columns": FEATURES, "data": [list(ROW.values())]}},
        request_only=True,
    ),  # fmt: skip
    OpenApiExample("dataframe_records", value={"dataframe_records": [ROW]}, request_only=True),
    OpenApiExample(
        "instances (lists)", value={"instances": [list(ROW.values())]}, request_only=True
    ),  # fmt: skip
    OpenApiExample(
        "inputs (dict of columns)",
        value={"inputs": {name: [value] for name, value in ROW.items()}},
        request_only=True,
    ),
    OpenApiExample(
        "params (classifiers)",
        value={
            "inputs": [[5.1, 3.5, 1.4, 0.2]],
            "params": {"predict_method": "predict_proba"},
        },
        request_only=True,
    ),
    OpenApiExample(
        "Scored", value={"predictions": [1.93]}, response_only=True, status_codes=["200"]
    ),
]

invocations_schema = extend_schema(
    tags=TAGS,
    summary="MLflow invocations",
    description=(
        "MLflow's scoring protocol: `dataframe_split`, `dataframe_records`, `instances` "
        "(records or lists of values), `inputs` (records, a dict of columns, or lists of "
        "values), or `text/csv`; lists of values are in the model's feature order. `params`: "
        "`predict_method` (`predict`, or `predict_proba` for classifiers: each prediction is "
        "then the row's class probabilities) and `return_probabilities`; any other param is a "
        '400 `unsupported_param`. The answer is `{"predictions": [...]}` (null for a bad row, '
        "described in `errors`). `/invocations` scores MLFLOW_DEFAULT_MODEL (404 "
        "`no_mlflow_model` when it is not set). Errors are problem+json with MLflow's "
        "`error_code` and `message` too."
    ),
    request={"application/json": OpenApiTypes.OBJECT, "text/csv": OpenApiTypes.STR},
    responses={
        200: OpenApiTypes.OBJECT,
        202: OpenApiResponse(JobOutput, description="Over the synchronous bounds: a job."),
        422: error("No row could be scored."),
        **ERROR_RESPONSES,
    },
    examples=MLFLOW_EXAMPLES,
)
ping_schema = extend_schema(
    tags=TAGS,
    summary="MLflow ping / health",
    description='200 `{"status": "ok"}` when this instance can serve (as /readyz), else 503.',
    responses={200: OpenApiTypes.OBJECT, 503: ERROR_RESPONSES[503]},
    auth=[],
)
version_schema = extend_schema(
    tags=TAGS,
    summary="Server version",
    responses={(200, "text/plain"): OpenApiTypes.STR},
    auth=[],
)
