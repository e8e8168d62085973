"""Registered models, their immutable versions, and the audit trail of default changes."""

from django.conf import settings
from django.db import models
from django.db.models import Q, UniqueConstraint


class Task(models.TextChoices):
    REGRESSION = "regression", "Regression"
    CLASSIFICATION = "classification", "Classification"


class ArtifactFormat(models.TextChoices):
    SKOPS = "skops", "skops"
    JOBLIB = "joblib", "joblib / pickle"


class VersionStatus(models.TextChoices):
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class RegisteredModel(models.Model):
    """A named model; its versions hold the artifacts, one of them is the default."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=20, choices=Task.choices)
    # Serving settings (a version is immutable; these may change at any time, and reach every
    # process within DEFAULT_VERSION_CACHE_SECONDS). Empty numbers take the settings' defaults.
    batching_enabled = models.BooleanField(
        default=True,
        help_text="Gather concurrent small requests into one call (if BATCH_ENABLED).",
    )
    batch_max_rows = models.PositiveIntegerField(
        null=True, blank=True, help_text="Rows per gathered call; empty: BATCH_MAX_ROWS."
    )
    batch_max_wait_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest gathering wait; empty: BATCH_MAX_WAIT_MS."
    )
    prediction_cache_enabled = models.BooleanField(
        default=True,
        help_text="Keep single-row predictions in Redis (if PREDICTION_CACHE_ENABLED).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One immutable artifact of a model, validated before it may become the default.

    `artifact` is the uploaded file under a content-addressed name (its sha256); a pickle
    upload also gets `serving_artifact`, its skops conversion, so web processes never unpickle.
    """

    registered_model = models.ForeignKey(
        RegisteredModel, on_delete=models.PROTECT, related_name="versions"
    )
    number = models.PositiveIntegerField()
    format = models.CharField(max_length=10, choices=ArtifactFormat.choices)
    artifact = models.FileField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    serving_artifact = models.FileField(max_length=255, blank=True)
    serving_sha256 = models.CharField(max_length=64, blank=True)
    sample = models.FileField(max_length=255, blank=True, help_text="Reference data (CSV).")
    input_schema = models.JSONField(help_text="Ordered features: name, type, categories, ...")
    output_info = models.JSONField(help_text="Task, classes, probabilities.")
    single_row_latency_ms = models.FloatField(null=True, blank=True)
    # ONNX conversion, tried at upload and checked against scikit-learn (onnx/): the
    # file when it converted and ran, whether every answer was exact (then it serves by
    # default, see serving.py), the largest difference on how many rows, the checker's
    # version (a newer one checks again) and a sentence on the outcome.
    onnx_artifact = models.FileField(max_length=255, blank=True)
    onnx_sha256 = models.CharField(max_length=64, blank=True)
    onnx_is_exact = models.BooleanField(default=False)
    onnx_max_difference = models.FloatField(null=True, blank=True)
    onnx_rows_compared = models.PositiveIntegerField(null=True, blank=True)
    onnx_checker = models.CharField(max_length=20, blank=True)
    onnx_single_row_latency_ms = models.FloatField(null=True, blank=True)
    onnx_detail = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=VersionStatus.choices, default=VersionStatus.READY
    )
    status_reason = models.TextField(blank=True)
    is_default = models.BooleanField(default=False)
    # Serving settings: they change how the version is served, never what it is, and may
    # change at any time. Empty means the model's setting (then the settings' default).
    serves_approximate = models.BooleanField(
        default=False,
        help_text="Opt in: serve the ONNX model although its answers are not exact.",
    )
    batching_enabled = models.BooleanField(
        null=True, blank=True, help_text="Gather concurrent small requests; empty: the model's."
    )
    batch_max_rows = models.PositiveIntegerField(
        null=True, blank=True, help_text="Rows per gathered call; empty: the model's."
    )
    batch_max_wait_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest gathering wait; empty: the model's."
    )
    prediction_cache_enabled = models.BooleanField(
        null=True, blank=True, help_text="Keep single-row predictions; empty: the model's."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-number"]
        constraints = [
            UniqueConstraint(fields=["registered_model", "number"], name="version_number_unique"),
            UniqueConstraint(
                fields=["registered_model"],
                condition=Q(is_default=True),
                name="one_default_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.registered_model.name} v{self.number}"

    @property
    def loadable_artifact(self):
        """The skops file that processes load: the upload itself, or its conversion."""
        if self.format == ArtifactFormat.SKOPS:
            return self.artifact, self.sha256
        return self.serving_artifact, self.serving_sha256

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.input_schema["features"]]


class DefaultChange(models.Model):
    """Audit trail: who moved a model's default pointer, when, from which version to which."""

    class Action(models.TextChoices):
        PROMOTE = "promote", "Promote"
        ROLLBACK = "rollback", "Roll back"

    registered_model = models.ForeignKey(
        RegisteredModel, on_delete=models.PROTECT, related_name="default_changes"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        source = f"v{self.from_version.number}" if self.from_version else "none"
        return f"{self.registered_model.name}: {source} -> v{self.to_version.number}"
