"""Input and output serializers of the registry API."""

from rest_framework import serializers

from .models import ArtifactFormat, DefaultChange, ModelVersion, RegisteredModel
from .serving import SERVING_OPTIONS, plan_for


class VersionUploadInput(serializers.Serializer):
    file = serializers.FileField(help_text="The artifact: .skops (or .joblib when allowed).")
    sample = serializers.FileField(
        required=False, help_text="Optional CSV of reference rows for the smoke test."
    )
    format = serializers.ChoiceField(
        choices=ArtifactFormat.choices, required=False, help_text="Default: from the file."
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Used when the model is new."
    )


class VersionOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    has_sample = serializers.SerializerMethodField()
    serving = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "number",
            "format",
            "sha256",
            "size_bytes",
            "status",
            "status_reason",
            "is_default",
            "input_schema",
            "output_info",
            "single_row_latency_ms",
            "notes",
            "has_sample",
            "serving",
            "created_by",
            "created_at",
        ]

    def get_has_sample(self, version) -> bool:
        return bool(version.sample)

    def get_serving(self, version) -> dict:
        """How the version is served: the path and whether it is exact, the ONNX check (rows
        compared, largest difference from scikit-learn), and the serving options as set on the
        version (null: the model's setting)."""
        plan = plan_for(version)
        return {
            "path": plan.path,
            "is_exact": plan.is_exact,
            "call_latency_ms": plan.call_latency_ms,
            "onnx": {
                "is_exact": version.onnx_is_exact,
                "rows_compared": version.onnx_rows_compared,
                "max_difference": version.onnx_max_difference,
                "detail": version.onnx_detail,
            },
            **{name: getattr(version, name) for name in SERVING_OPTIONS},
        }


class VersionSummary(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["number", "status", "is_default", "format", "sha256", "created_at"]


class DefaultChangeOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")
    from_version = serializers.IntegerField(source="from_version.number", default=None)
    to_version = serializers.IntegerField(source="to_version.number")
    actor = serializers.CharField(source="actor.username", default=None)

    class Meta:
        model = DefaultChange
        fields = ["model", "action", "from_version", "to_version", "actor", "created_at"]


class ModelSummaryOutput(serializers.ModelSerializer):
    default_version = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "task", "default_version", "latest_version", "created_at"]

    def get_default_version(self, registered_model) -> int | None:
        default = next((v for v in registered_model.versions.all() if v.is_default), None)
        return default.number if default else None

    def get_latest_version(self, registered_model) -> int | None:
        numbers = [version.number for version in registered_model.versions.all()]
        return max(numbers, default=None)


class ModelDetailOutput(ModelSummaryOutput):
    input_schema = serializers.SerializerMethodField()
    output_info = serializers.SerializerMethodField()
    versions = VersionSummary(many=True)
    default_changes = serializers.SerializerMethodField()

    class Meta(ModelSummaryOutput.Meta):
        fields = ModelSummaryOutput.Meta.fields + [
            "input_schema",
            "output_info",
            "versions",
            "default_changes",
        ]

    def _default(self, registered_model):
        return next((v for v in registered_model.versions.all() if v.is_default), None)

    def get_input_schema(self, registered_model) -> dict | None:
        default = self._default(registered_model)
        return default.input_schema if default else None

    def get_output_info(self, registered_model) -> dict | None:
        default = self._default(registered_model)
        return default.output_info if default else None

    def get_default_changes(self, registered_model) -> list[dict]:
        changes = registered_model.default_changes.select_related(
            "registered_model", "from_version", "to_version", "actor"
        )[:20]
        return DefaultChangeOutput(changes, many=True).data
