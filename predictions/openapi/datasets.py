"""What the OpenAPI schema says about dataset runs (staff): the request, the run, each error
code."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema

from core.openapi import error
from core.pagination import PAGE_PARAMETERS, page_of

from ..models import JobStatus
from ..serializers import DatasetInput, DatasetRunOutput
from . import ERROR_RESPONSES

DATASET_RUN_NOT_FOUND = error("`dataset_run_not_found`: no such dataset run.")
STAFF_ONLY = error(
    "`permission_denied`: dataset runs are for staff; `datasets_not_enabled`: DATASET_LOCATIONS "
    "is not set; `location_not_allowed`: the input, output or errors location (or a file the "
    "input holds, symlinks followed) is outside DATASET_LOCATIONS; `scheduler_not_allowed`: "
    "not one of DATASET_SCHEDULERS."
)

dataset_create_schema = extend_schema(
    summary="Score a dataset",
    description=(
        "Staff: score a Parquet dataset where it lives (a file, a folder of files or a glob; "
        "local or s3://) with the model's default version or the one in the URL, on a Dask "
        "cluster, in the background. Predictions go to `output` as Parquet parts (`row`, `id` "
        "with `id_column`, `prediction`, `probability_<class>`), bad rows to `errors` "
        "(default `output`/_errors). Every location must lie inside DATASET_LOCATIONS. "
        "Checked now, without reading the data: the locations, the input's files, outputs that "
        "already hold files; a refusal queues nothing. Answers 202 with the run and its URL in "
        "`Location`; follow it at `/api/v1/datasets/{id}/`."
    ),
    request=DatasetInput,
    responses={
        202: DatasetRunOutput,
        400: error(
            "`invalid_input` (a field missing or wrong, probabilities from a regressor), "
            "`empty_input` (the input holds no Parquet files), `malformed_request`."
        ),
        403: STAFF_ONLY,
        404: error("`model_not_found`, `version_not_found`, `dataset_not_found` (no input)."),
        409: error(
            "`output_exists`: the output or errors location holds files; `no_default_version`."
        ),
        503: ERROR_RESPONSES[503],
    },
    examples=[
        OpenApiExample(
            "A folder of Parquet files",
            value={"input": "/srv/lake/houses/", "output": "/srv/lake/scored/houses-v1/"},
            request_only=True,
        ),
        OpenApiExample(
            "On S3, with ids and a scheduler",
            value={
                "input": "s3://bucket/lake/houses/*.parquet",
                "output": "s3://bucket/scored/houses/",
                "id_column": "house_id",
                "scheduler": "tcp://dask-scheduler:8786",
            },
            request_only=True,
        ),
    ],
)

dataset_detail_schema = extend_schema(
    summary="A dataset run",
    description="Staff: the run's state, rows and partitions done; poll it until `status` is "
    "finished. A queued run whose RQ job was lost (its worker died) is shown failed.",
    responses={200: DatasetRunOutput, 403: STAFF_ONLY, 404: DATASET_RUN_NOT_FOUND},
)

dataset_list_schema = extend_schema(
    operation_id="api_v1_datasets_list",
    summary="List dataset runs",
    description="Staff: every dataset run (the API's and `manage.py score_dataset`'s), newest "
    "first, a page at a time (follow `next`). Filter by `model` (its name) and `status`.",
    parameters=[
        *PAGE_PARAMETERS,
        OpenApiParameter("model", OpenApiTypes.STR, description="Only runs of this model."),
        OpenApiParameter(
            "status",
            OpenApiTypes.STR,
            enum=[status.value for status in JobStatus],
            description="Only runs in this state.",
        ),
    ],
    responses={200: page_of(DatasetRunOutput), 403: STAFF_ONLY},
)
