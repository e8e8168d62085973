"""Every write and every scoring step: views, jobs and the admin call these."""

from .callbacks import check_callback_url, deliver_callback
from .jobs import (
    JobInput,
    cancel_job,
    delete_expired_jobs,
    fail_job,
    finish_job,
    plan_job,
    refresh_job,
    score_chunk,
    submit_job,
)
from .scoring import Prediction, check_sync_rows, predict, score_rows, servable_version

__all__ = [
    "JobInput",
    "Prediction",
    "cancel_job",
    "check_callback_url",
    "check_sync_rows",
    "deliver_callback",
    "delete_expired_jobs",
    "fail_job",
    "finish_job",
    "plan_job",
    "predict",
    "refresh_job",
    "score_chunk",
    "score_rows",
    "servable_version",
    "submit_job",
]
