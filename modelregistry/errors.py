"""Errors of models and versions; each renders as one problem+json body (core.errors)."""

from core.errors import ServingError


class ModelNotFound(ServingError):
    status_code, code, title = 404, "model_not_found", "Model not found"


class VersionNotFound(ServingError):
    status_code, code, title = 404, "version_not_found", "Version not found"


class InvalidModelName(ServingError):
    status_code, code, title = 400, "invalid_model_name", "Invalid model name"


class NoDefaultVersion(ServingError):
    status_code, code, title = 409, "no_default_version", "No default version"


class NoPreviousVersion(ServingError):
    status_code, code, title = 409, "no_previous_version", "Nothing to roll back to"


class VersionNotReady(ServingError):
    status_code, code, title = 409, "version_not_ready", "Version not ready"


class OnnxUnavailable(ServingError):
    status_code, code, title = 409, "onnx_unavailable", "No ONNX model"


class TaskMismatch(ServingError):
    status_code, code, title = 400, "task_mismatch", "Task mismatch"


class ArtifactInvalid(ServingError):
    status_code, code, title = 400, "artifact_invalid", "Artifact invalid"


class UntrustedType(ArtifactInvalid):
    code, title = "untrusted_type", "Untrusted type in artifact"


class PickleNotAllowed(ArtifactInvalid):
    code, title = "pickle_not_allowed", "Pickle artifacts are not allowed"


class ArtifactTooLarge(ServingError):
    status_code, code, title = 413, "artifact_too_large", "Artifact too large"


class ModelUnavailable(ServingError):
    """The version's artifact failed to load (corrupt, missing): 503, try another version."""

    status_code, code, title = 503, "model_unavailable", "Model unavailable"

    def __init__(self, detail: str = "", **kwargs):
        kwargs.setdefault("headers", {"Retry-After": "30"})
        super().__init__(detail, **kwargs)
