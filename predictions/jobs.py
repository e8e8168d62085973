"""The RQ entry points under their old dotted path, "predictions.jobs.<function>".

They live in predictions/tasks.py now, and new steps are queued under that path. Steps queued
before an upgrade (waiting, deferred behind their chunks, or due for a retry) still sit in
Redis under this one, and RQ imports a step's function by its dotted path when a worker picks
it up: this module keeps them running. It can go once no queue holds such a step.
"""

from .tasks import finish_job, plan_job, score_chunk

__all__ = ["finish_job", "plan_job", "score_chunk"]
