"""How one version is served: its path, whether that path is exact, batching and the cache.

Every caller that needs to know how a version is served (scoring, the batcher, the prediction
cache, the admin, the API) reads one `ServingPlan`, computed here from the version's serving
options, its model's, and the settings. The option names are listed once, in SERVING_OPTIONS.

The first rule: by default a version answers exactly as its estimator does in-process. An ONNX
model serves by default only when its check found it exact (`onnx_is_exact`: every answer within
EXACT_RELATIVE of scikit-learn's, labels identical); an inexact (float32) one serves only when
the version opts in with `serves_approximate`, and then every answer says so.
"""

from dataclasses import dataclass

from django.conf import settings

SKLEARN, ONNX, ONNX_APPROXIMATE = "scikit-learn", "onnx", "onnx-approximate"
# |actual - expected| <= EXACT_RELATIVE * max(|expected|, 1): relative 1e-9, absolute near zero.
EXACT_RELATIVE = 1e-9
APPROXIMATE_HEADER = "X-Modelport-Approximate"

# What may change on a stored version at any time (never what it is).
SERVING_OPTIONS = (
    "serves_approximate",
    "batching_enabled",
    "batch_max_rows",
    "batch_max_wait_ms",
    "prediction_cache_enabled",
)


@dataclass(frozen=True)
class ServingPlan:
    """How a version's rows are scored in this process, decided once per version row."""

    path: str  # SKLEARN, ONNX or ONNX_APPROXIMATE
    is_exact: bool
    max_difference: float | None  # of the ONNX answers from scikit-learn's, as checked
    call_latency_ms: float | None  # one single-row call on `path`, as measured at upload
    batching_enabled: bool
    batch_max_rows: int
    batch_max_wait_seconds: float
    prediction_cache_enabled: bool

    @property
    def approximate_note(self) -> dict | None:
        """What an answer from an inexact path says about itself (None when exact)."""
        if self.is_exact:
            return None
        return {"path": self.path, "max_difference": self.max_difference}

    @property
    def approximate_header(self) -> str | None:
        """The APPROXIMATE_HEADER value of an answer from an inexact path (None when exact)."""
        if self.is_exact:
            return None
        return f"{self.path}; max-difference={self.max_difference:.3g}"


def plan_for(version) -> ServingPlan:
    """The version's plan, kept on the instance: a version row read again gets a new plan."""
    plan = version.__dict__.get("_serving_plan")
    if plan is None:
        plan = version.__dict__["_serving_plan"] = _make_plan(version)
    return plan


def forget_plan(version) -> None:
    """Drop a cached plan after the version's serving options changed in this instance."""
    version.__dict__.pop("_serving_plan", None)


def serving_path(version) -> str:
    """What scores the version's rows: ONNX when exact, ONNX_APPROXIMATE only when opted in."""
    if not (settings.ONNX_ENABLED and version.onnx_artifact):
        return SKLEARN
    if version.onnx_is_exact:
        return ONNX
    return ONNX_APPROXIMATE if version.serves_approximate else SKLEARN


def _make_plan(version) -> ServingPlan:
    path = serving_path(version)
    on_onnx = path != SKLEARN
    latency_ms = version.onnx_single_row_latency_ms if on_onnx else version.single_row_latency_ms
    max_wait_ms = _setting(version, "batch_max_wait_ms")
    return ServingPlan(
        path=path,
        is_exact=path != ONNX_APPROXIMATE,
        max_difference=version.onnx_max_difference if on_onnx else None,
        call_latency_ms=latency_ms,
        batching_enabled=settings.BATCH_ENABLED
        and _switch(version, "batching_enabled", latency_ms, settings.BATCH_MIN_CALL_MS),
        batch_max_rows=_setting(version, "batch_max_rows") or settings.BATCH_MAX_ROWS,
        batch_max_wait_seconds=(settings.BATCH_MAX_WAIT_MS if max_wait_ms is None else max_wait_ms)
        / 1000,
        prediction_cache_enabled=settings.PREDICTION_CACHE_ENABLED
        and _switch(
            version,
            "prediction_cache_enabled",
            latency_ms,
            settings.PREDICTION_CACHE_MIN_CALL_MS,
        ),
    )


def _setting(version, name: str):
    """A serving setting: the version's own, else its model's (None: the Django setting)."""
    value = getattr(version, name)
    return getattr(version.registered_model, name) if value is None else value


def _switch(version, name: str, latency_ms: float | None, min_call_ms: float) -> bool:
    """A switch (batching, cache): the version's own when set; else its model's, and then only
    for a model call that costs at least `min_call_ms` (saving a call cheaper than the
    mechanism itself would be a loss)."""
    own = getattr(version, name)
    if own is not None:
        return own
    if not getattr(version.registered_model, name):
        return False
    return latency_ms is None or latency_ms >= min_call_ms
