"""Prediction and job endpoints, and the web pages."""

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.generic import TemplateView
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response

from core.errors import PROBLEM_CONTENT_TYPE, problem
from core.pagination import paginated_response
from core.views import ApiView
from modelregistry.models import RegisteredModel, VersionStatus
from modelregistry.serving import APPROXIMATE_HEADER

from . import intake, jobfiles, monitoring, services
from .errors import DatasetRunNotFound, InvalidInput, JobNotFound, ResultsNotReady
from .models import DatasetRun, JobStatus, PredictionJob
from .openapi import (
    job_cancel_schema,
    job_detail_schema,
    job_download_schema,
    job_errors_schema,
    job_list_schema,
    job_results_schema,
    job_schema,
    predict_query_schema,
    predict_schema,
)
from .openapi.datasets import dataset_create_schema, dataset_detail_schema, dataset_list_schema
from .permissions import PredictPermission
from .request_log import note_request
from .serializers import DatasetInput, DatasetRunOutput, JobOutput, prediction_body
from .services import dataset_runs
from .throttles import PredictThrottle


class PredictionView(ApiView):
    # Only multipart goes through DRF's parsers; every other body is read by intake.py.
    parser_classes = [MultiPartParser]
    permission_classes = [PredictPermission]
    throttle_classes = [PredictThrottle]


def submit_job_response(request, version, job_input) -> Response:
    """Queue a job for the input and answer 202 with it (its URL in Location)."""
    job = services.submit_job(
        version=version,
        job_input=job_input,
        owner=request.user,
        request_id=request.request_id,
        id_column=_job_option(request, "id_column", 200),
        callback_url=_job_option(request, "callback_url", 2000),
    )
    note_request(request, job_id=job.id)
    body = JobOutput(job, context={"request": request}).data
    return Response(body, status=202, headers={"Location": body["url"]})


def _job_option(request, name: str, max_length: int) -> str:
    """A job option (`id_column`, `callback_url`): a query parameter or a multipart form field."""
    value = request.query_params.get(name, "")
    if not value and request.content_type.startswith("multipart/form-data"):
        value = request.POST.get(name, "")
    if len(value) > max_length:
        raise InvalidInput(f"'{name}' is longer than {max_length} characters.")
    return value


class PredictView(PredictionView):
    """Score rows with a model's default version, or with the version in the URL."""

    @predict_query_schema
    def get(self, request, name, number=None):
        version = services.servable_version(name, number)
        note_request(request, version_number=version.number)
        parsed = intake.query_row(request.query_params, version.input_schema)
        return _prediction_response(request, version, parsed, parsed.return_probabilities)

    @predict_schema
    def post(self, request, name, number=None):
        version = services.servable_version(name, number)
        note_request(request, version_number=version.number)
        received = intake.receive(request)
        if received.job_input is not None:
            return submit_job_response(request, version, received.job_input)
        parsed = received.parsed
        asked = parsed.return_probabilities or intake.asks_probabilities(request.query_params)
        return _prediction_response(request, version, parsed, asked)


def _prediction_response(request, version, parsed, return_probabilities: bool) -> Response:
    """Score the rows and answer: 200 when a row was scored, else 422 with the rows' errors."""
    result = services.predict(
        version=version, parsed=parsed, return_probabilities=return_probabilities
    )
    note_request(request, rows=result.rows, rows_failed=result.rows_failed)
    body = prediction_body(result, parsed, request.request_id)
    if result.rows_failed < result.rows:
        header = result.plan.approximate_header
        return Response(body, headers={APPROXIMATE_HEADER: header} if header else None)
    return Response(all_rows_failed(body, request), status=422, content_type=PROBLEM_CONTENT_TYPE)


class JobCreateView(PredictionView):
    """Score a file in the background, whatever its size."""

    @job_schema
    def post(self, request, name, number=None):
        version = services.servable_version(name, number)
        note_request(request, version_number=version.number)
        received = intake.receive(request, as_job=True)
        return submit_job_response(request, version, received.job_input)


def all_rows_failed(body: dict, request) -> dict:
    """The batch body with the problem-details members on top: no row could be scored."""
    summary = problem(
        status=422,
        code="no_valid_rows",
        title="No valid rows",
        detail=f"None of the {body['rows']} rows could be scored; see 'errors'.",
        request=request,
    )
    return {**summary, **body}


def get_job(request, job_id) -> PredictionJob:
    """A job its owner (or staff) may see; anyone else gets the same 404 as for no job."""
    jobs = PredictionJob.objects.select_related("version__registered_model", "owner")
    if not request.user.is_staff:
        jobs = jobs.filter(owner_id=request.user.pk)
    job = jobs.filter(pk=job_id).first()
    note_request(request, job_id=job_id)
    if job is None:
        raise JobNotFound(f"No job {job_id} that you can see.")
    note_request(
        request, model_name=job.version.registered_model.name, version_number=job.version.number
    )
    return job


def _finished_results(request, job_id) -> PredictionJob:
    job = get_job(request, job_id)
    if job.status != JobStatus.SUCCEEDED or not job.has_results:
        raise ResultsNotReady(f"The job is {job.status}; results come when it has succeeded.")
    return job


def _by_model_and_status(rows, params):
    """Jobs or dataset runs filtered by `?model=` (its name) and `?status=` (checked)."""
    model = params.get("model")
    if model is not None:
        rows = rows.filter(version__registered_model__name=model)
    status = params.get("status")
    if status is not None:
        if status not in JobStatus.values:
            raise InvalidInput(f"'status' must be one of {', '.join(JobStatus.values)}.")
        rows = rows.filter(status=status)
    return rows


class JobListView(ApiView):
    """The caller's jobs, newest first (staff: everyone's, or one user's with `?owner=`)."""

    ordering = "-created_at"

    @job_list_schema
    def get(self, request):
        jobs = PredictionJob.objects.select_related("version__registered_model", "owner")
        owner = request.query_params.get("owner")
        if not request.user.is_staff:
            if owner is not None and owner != request.user.get_username():
                raise PermissionDenied("Only staff may list other users' jobs.")
            jobs = jobs.filter(owner_id=request.user.pk)
        elif owner is not None:
            jobs = jobs.filter(owner__username=owner)
        jobs = _by_model_and_status(jobs, request.query_params)
        return paginated_response(self, request, jobs, JobOutput)


class JobDetailView(ApiView):
    @job_detail_schema
    def get(self, request, job_id):
        job = services.refresh_job(get_job(request, job_id))
        return Response(JobOutput(job, context={"request": request}).data)


class JobCancelView(ApiView):
    @job_cancel_schema
    def post(self, request, job_id):
        job = services.cancel_job(get_job(request, job_id))
        return Response(JobOutput(job, context={"request": request}).data)


class JobResultsView(ApiView):
    """Predictions page by page, each with its input row number."""

    @job_results_schema
    def get(self, request, job_id):
        job = _finished_results(request, job_id)
        after = _int_param(request, "cursor", -1, minimum=-1)
        size = _int_param(
            request, "page_size", settings.RESULTS_PAGE_SIZE, minimum=1,
            maximum=settings.RESULTS_MAX_PAGE_SIZE,
        )  # fmt: skip
        rows = jobfiles.read_results_page(job.id, after=after, size=size)
        url = reverse("job-results", args=[job.id])
        has_more = bool(rows) and rows[-1]["row"] < job.rows_total - 1
        following = f"{url}?cursor={rows[-1]['row']}&page_size={size}" if has_more else None
        return Response({"results": rows, "next": following, "rows_total": job.rows_total})


def _int_param(request, name: str, default: int, *, minimum: int, maximum=None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"'{name}' must be a whole number.") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum}" + (f" to {maximum}" if maximum is not None else "")
        raise InvalidInput(f"'{name}' must be {bound}.")
    return value


class JobDownloadView(ApiView):
    """The whole result as CSV or Parquet: row, prediction (and id)."""

    produces = ("text/csv", "application/vnd.apache.parquet")  # Accept them (renderers.py)

    @job_download_schema
    def get(self, request, job_id):
        job = _finished_results(request, job_id)
        kind = request.query_params.get("format", "csv")
        stem = f"{job.version.registered_model.name}-v{job.version.number}-{job.id}"
        if kind == "parquet":
            return FileResponse(
                jobfiles.open_download(jobfiles.result_path(job.id)),
                as_attachment=True,
                filename=f"{stem}.parquet",
                content_type="application/vnd.apache.parquet",
            )
        if kind != "csv":
            raise InvalidInput("'format' must be csv or parquet.")
        response = StreamingHttpResponse(
            jobfiles.iter_result_csv(job.id), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
        return response


class JobErrorsView(ApiView):
    """The per-row errors as CSV: row, field, code, message."""

    produces = ("text/csv",)

    @job_errors_schema
    def get(self, request, job_id):
        job = _finished_results(request, job_id)
        return FileResponse(
            jobfiles.open_download(jobfiles.errors_path(job.id)),
            as_attachment=True,
            filename=f"{job.id}-errors.csv",
            content_type="text/csv; charset=utf-8",
        )


class DatasetCreateView(ApiView):
    """Score a Parquet dataset where it lives, on a Dask cluster, in the background (staff)."""

    permission_classes = [IsAdminUser]

    @dataset_create_schema
    def post(self, request, name, number=None):
        version = services.servable_version(name, number)
        note_request(request, version_number=version.number)
        data = DatasetInput(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        run = dataset_runs.submit_dataset(
            version=version,
            input=options["input"],
            output=options["output"],
            errors_output=options["errors"],
            id_column=options["id_column"],
            scheduler=options["scheduler"],
            partition_rows=options["partition_rows"],
            with_probabilities=options["probabilities"],
            created_by=request.user,
            request_id=request.request_id,
        )
        note_request(request, job_id=run.id)
        body = DatasetRunOutput(run).data
        return Response(body, status=202, headers={"Location": body["url"]})


def _dataset_runs():
    return DatasetRun.objects.select_related("version__registered_model", "created_by")


class DatasetListView(ApiView):
    """Every dataset run, newest first (staff)."""

    permission_classes = [IsAdminUser]
    ordering = "-created_at"

    @dataset_list_schema
    def get(self, request):
        runs = _by_model_and_status(_dataset_runs(), request.query_params)
        return paginated_response(self, request, runs, DatasetRunOutput)


class DatasetDetailView(ApiView):
    """A dataset run's state and progress (staff)."""

    permission_classes = [IsAdminUser]

    @dataset_detail_schema
    def get(self, request, run_id):
        note_request(request, job_id=run_id)
        run = _dataset_runs().filter(pk=run_id).first()
        if run is None:
            raise DatasetRunNotFound(f"No dataset run {run_id}.")
        return Response(DatasetRunOutput(dataset_runs.refresh_run(run)).data)


# --- Web pages


class UploadPageView(LoginRequiredMixin, TemplateView):
    """The upload form: upload.js sends the file to the predict or jobs API and shows the answer."""

    template_name = "predictions/upload.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["models"] = RegisteredModel.objects.prefetch_related("versions")
        context["row_schemas"] = _row_schemas(context["models"])
        return context


def _row_schemas(models) -> dict:
    """What the one-row form is made from (row.js): each model's default version number and
    each ready version's input features and output (task, classes)."""
    schemas = {}
    for model in models:
        versions = [v for v in model.versions.all() if v.status == VersionStatus.READY]
        schemas[model.name] = {
            "default": next((v.number for v in versions if v.is_default), None),
            "versions": {
                str(v.number): {"features": v.input_schema["features"], "output": v.output_info}
                for v in versions
            },
        }
    return schemas


class MonitoringView(UserPassesTestMixin, TemplateView):
    """Traffic per model version, latest jobs and instance health, for staff. Anonymous users
    are sent to the login page; other users get a 403 (UserPassesTestMixin does both)."""

    template_name = "predictions/monitoring.html"

    def test_func(self) -> bool:
        return self.request.user.is_staff

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        window = self.request.GET.get("window", "hour")
        if window not in monitoring.WINDOWS:
            window = "hour"  # a mistyped link still shows the page
        context["stats"] = monitoring.version_stats(window=window)
        context["windows"] = monitoring.WINDOWS.values()
        context["jobs"] = monitoring.latest_jobs()
        context["instances"] = monitoring.instance_health()
        return context
