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


class ScheduleInputMissing(ServingError):
    status_code, code, title = 404, "schedule_input_missing", "Schedule input not found"
