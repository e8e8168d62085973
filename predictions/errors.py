"""Errors of requests, rows and jobs; each renders as one problem+json body (core.errors)."""

from core.errors import ServingError


class InvalidInput(ServingError):
    status_code, code, title = 400, "invalid_input", "Invalid input"


class MalformedRequest(InvalidInput):
    code, title = "malformed_request", "Malformed request"


class EmptyInput(InvalidInput):
    code, title = "empty_input", "No rows"


class InputTooLarge(ServingError):
    status_code, code, title = 413, "input_too_large", "Input too large"


class JobNotFound(ServingError):
    status_code, code, title = 404, "job_not_found", "Job not found"


class JobFinished(ServingError):
    status_code, code, title = 409, "job_finished", "Job already finished"


class ResultsNotReady(ServingError):
    status_code, code, title = 409, "results_not_ready", "Results not ready"


class QueueUnavailable(ServingError):
    status_code, code, title = 503, "queue_unavailable", "Job queue unavailable"


class UnsupportedFormat(ServingError):
    status_code, code, title = 415, "unsupported_format", "Unsupported format"


class UnsupportedParam(InvalidInput):
    code, title = "unsupported_param", "Unsupported param"


class WrongShape(InvalidInput):
    """An input's shape does not fit: values per row, an Open Inference tensor's shape."""

    code, title = "wrong_shape", "Wrong shape"


class WrongDatatype(InvalidInput):
    code, title = "wrong_datatype", "Wrong datatype"


class UnknownInput(InvalidInput):
    code, title = "unknown_input", "Unknown input"


class MissingInput(InvalidInput):
    code, title = "missing_input", "Missing input"


class UnknownOutput(InvalidInput):
    code, title = "unknown_output", "Unknown output"


class CallbackNotAllowed(InvalidInput):
    code, title = "callback_not_allowed", "Callback not allowed"


class DatasetNotFound(ServingError):
    status_code, code, title = 404, "dataset_not_found", "Dataset not found"


class OutputExists(ServingError):
    status_code, code, title = 409, "output_exists", "Output already exists"


class OutputNotWritable(InvalidInput):
    code, title = "output_not_writable", "Output not writable"


class ScheduleInputMissing(ServingError):
    status_code, code, title = 404, "schedule_input_missing", "Schedule input not found"


class DatasetsNotEnabled(ServingError):
    status_code, code, title = 403, "datasets_not_enabled", "Datasets not enabled"


class LocationNotAllowed(ServingError):
    status_code, code, title = 403, "location_not_allowed", "Location not allowed"


class SchedulerNotAllowed(ServingError):
    status_code, code, title = 403, "scheduler_not_allowed", "Scheduler not allowed"


class DatasetRunNotFound(ServingError):
    status_code, code, title = 404, "dataset_run_not_found", "Dataset run not found"
