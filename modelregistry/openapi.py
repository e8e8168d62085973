"""What the OpenAPI schema says about the registry endpoints: each one's errors and codes
(core.openapi adds the generic ones and makes them all problem+json)."""

from core.openapi import error

MODEL_NOT_FOUND = error("`model_not_found`: no model of that name.")
VERSION_NOT_FOUND = error("`model_not_found` or `version_not_found`.")
STAFF_ONLY = error("`permission_denied`: writes need a staff user.")

UPLOAD_ERRORS = {
    400: error(
        "`invalid_model_name` (not a slug), `artifact_invalid` (does not load, no usable schema, "
        "fails the smoke test), `untrusted_type` (a skops type outside the allowlist), "
        "`pickle_not_allowed` (MODELPORT_ALLOW_PICKLE is false), `task_mismatch` (the task "
        "differs from the model's), `invalid_input` (a missing or bad field)."
    ),
    403: STAFF_ONLY,
    413: error("`artifact_too_large`: the artifact or sample is over MAX_ARTIFACT_BYTES."),
    415: error("`unsupported_format`: send multipart/form-data with the artifact in `file`."),
    507: error("`storage_full`: the disk holding artifacts is full; nothing was kept."),
}
PROMOTE_ERRORS = {
    403: STAFF_ONLY,
    404: VERSION_NOT_FOUND,
    409: error("`version_not_ready`: only a `ready` version can be the default."),
}
ROLLBACK_ERRORS = {
    403: STAFF_ONLY,
    404: MODEL_NOT_FOUND,
    409: error("`no_previous_version`: there is no earlier default to go back to."),
}
