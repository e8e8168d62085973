"""Admin: upload versions (validated in the form), promote, roll back, read the audit trail."""

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from . import artifacts, services, serving, storage
from .errors import ServingError
from .models import ArtifactFormat, DefaultChange, ModelVersion, RegisteredModel


def _pretty_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class VersionUploadForm(forms.ModelForm):
    """Upload form: clean() runs every check, so a bad artifact shows inline."""

    artifact_file = forms.FileField(
        label="Artifact", help_text="A .skops file (or .joblib/.pkl when pickles are allowed)."
    )
    sample_file = forms.FileField(
        label="Sample CSV",
        required=False,
        help_text="Reference rows with the model's feature columns, used for the smoke test.",
    )
    artifact_format = forms.ChoiceField(
        label="Format",
        choices=[("", "Detect from the file")] + list(ArtifactFormat.choices),
        required=False,
    )
    make_default = forms.BooleanField(
        required=False, help_text="Promote this version to default once it is stored."
    )

    class Meta:
        model = ModelVersion
        fields = ["registered_model", "notes"]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("artifact_file")
        if not upload or not cleaned.get("registered_model"):
            return cleaned
        try:
            data = storage.read_upload(upload, max_bytes=settings.MAX_ARTIFACT_BYTES)
            sample = cleaned.get("sample_file")
            sample_data = (
                storage.read_upload(sample, max_bytes=settings.MAX_ARTIFACT_BYTES, label="Sample")
                if sample
                else None
            )
            artifact_format = cleaned.get("artifact_format") or artifacts.detect_format(
                upload.name, data
            )
            validated = artifacts.validate_artifact(
                data, format=artifact_format, sample=sample_data
            )
        except ServingError as exc:
            raise ValidationError(exc.detail) from None
        task = validated.output_info["task"]
        if cleaned["registered_model"].task != task:
            raise ValidationError(
                f"{cleaned['registered_model']} is a {cleaned['registered_model'].task} model; "
                f"this artifact is a {task} model."
            )
        cleaned["validated"], cleaned["sample_data"] = validated, sample_data
        return cleaned


def _inherit_choice(**kwargs) -> forms.NullBooleanField:
    choices = [("", "The model's setting"), ("True", "Yes"), ("False", "No")]
    return forms.NullBooleanField(required=False, widget=forms.Select(choices=choices), **kwargs)


class ServingOptionsForm(forms.ModelForm):
    """A stored version's page: only how it is served can change, never what it is."""

    batching_enabled = _inherit_choice(label="Micro-batching")
    prediction_cache_enabled = _inherit_choice(label="Prediction cache")
    serves_approximate = forms.BooleanField(
        label="Serve approximate answers (opt-in)",
        required=False,
        help_text="Score with the ONNX model although its answers are not exactly "
        "scikit-learn's; every answer then says so, in its body and a response header.",
    )

    class Meta:
        model = ModelVersion
        fields = list(serving.SERVING_OPTIONS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        version, field = self.instance, self.fields["serves_approximate"]
        if version.onnx_is_exact:
            field.help_text = "Not needed: the exact ONNX model serves this version already."
        elif version.onnx_max_difference is not None:
            field.help_text += f" Largest measured difference: {version.onnx_max_difference:.3g}."

    def clean_serves_approximate(self):
        wanted = self.cleaned_data["serves_approximate"]
        if wanted and not self.instance.onnx_artifact:
            raise ValidationError(
                f"This version has no ONNX model to serve "
                f"({self.instance.onnx_detail or 'not converted'})."
            )
        return wanted


class VersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ["number", "status", "is_default", "format", "sha256", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class DefaultChangeInline(admin.TabularInline):
    model = DefaultChange
    fields = ["created_at", "action", "from_version", "to_version", "actor"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "default_version", "created_at"]
    search_fields = ["name", "description"]
    inlines = [VersionInline, DefaultChangeInline]
    actions = ["rollback"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "task", "created_at"] if obj else ["created_at"]

    @admin.display(description="Default version")
    def default_version(self, obj) -> str:
        default = obj.versions.filter(is_default=True).first()
        return f"v{default.number}" if default else "-"

    @admin.action(description="Roll back to the previous default version")
    def rollback(self, request, queryset):
        for registered_model in queryset:
            try:
                change = services.rollback_default(
                    registered_model=registered_model, actor=request.user
                )
            except ServingError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(request, f"Rolled back: {change}.", messages.SUCCESS)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "is_default",
        "serving_path",
        "format",
        "created_by",
        "created_at",
    ]
    list_filter = ["registered_model", "status", "is_default", "format"]
    actions = ["promote"]
    readonly_fields = [
        "registered_model",
        "number",
        "format",
        "artifact",
        "sha256",
        "size_bytes",
        "serving_artifact",
        "serving_sha256",
        "sample",
        "schema_table",
        "output",
        "single_row_latency_ms",
        "serving_path",
        "onnx_check",
        "onnx_call",
        "notes",
        "status",
        "status_reason",
        "is_default",
        "created_by",
        "created_at",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = VersionUploadForm if obj is None else ServingOptionsForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return [
                "registered_model",
                "artifact_file",
                "artifact_format",
                "sample_file",
                "notes",
                "make_default",
            ]
        return self.readonly_fields + list(serving.SERVING_OPTIONS)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return super().get_fieldsets(request, obj)
        shown = ["serving_path", "onnx_check", "onnx_call", *serving.SERVING_OPTIONS]
        stored = [name for name in self.readonly_fields if name not in shown]
        return [
            ("Version (immutable)", {"fields": stored}),
            (
                "Serving (may change at any time; reaches every process within "
                "DEFAULT_VERSION_CACHE_SECONDS for the default version)",
                {"fields": shown},
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        # A version is immutable: only its serving options can change once it exists.
        return self.readonly_fields if obj else []

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        cleaned = form.cleaned_data
        if change:
            options = {name: cleaned[name] for name in form.changed_data}
            if options:
                stored = ModelVersion.objects.select_related("registered_model").get(pk=obj.pk)
                services.set_serving_options(version=stored, **options)
            return
        version = services.register_version(
            model_name=cleaned["registered_model"].name,
            artifact=cleaned["validated"].data,
            sample=cleaned["sample_data"],
            notes=cleaned["notes"],
            created_by=request.user,
            validated=cleaned["validated"],
        )
        if cleaned["make_default"]:
            services.set_default_version(version=version, actor=request.user)
        # The admin goes on with `obj` (log entry, redirect): make it the stored row.
        obj.__dict__.update(ModelVersion.objects.get(pk=version.pk).__dict__)

    @admin.display(description="Input schema")
    def schema_table(self, obj):
        return _pretty_json(obj.input_schema)

    @admin.display(description="Output")
    def output(self, obj):
        return _pretty_json(obj.output_info)

    @admin.display(description="Serving path")
    def serving_path(self, obj) -> str:
        path = serving.serving_path(obj)
        if path == serving.ONNX:
            return "ONNX runtime (exact)"
        if path == serving.ONNX_APPROXIMATE:
            return f"ONNX runtime, APPROXIMATE (opted in; up to {obj.onnx_max_difference:.3g} off)"
        if obj.onnx_artifact and not settings.ONNX_ENABLED:
            return "scikit-learn (ONNX_ENABLED is false)"
        return "scikit-learn"

    @admin.display(description="ONNX call, one row")
    def onnx_call(self, obj) -> str:
        if obj.onnx_single_row_latency_ms is None:
            return "-"
        text = f"{obj.onnx_single_row_latency_ms:g} ms"
        if obj.single_row_latency_ms is not None:
            text += f" (scikit-learn: {obj.single_row_latency_ms:g} ms)"
        return text

    @admin.display(description="ONNX check")
    def onnx_check(self, obj) -> str:
        return obj.onnx_detail or "Not tried (uploaded before ONNX conversion existed)."

    @admin.action(description="Promote the selected version to default")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.ERROR)
            return
        version = queryset.get()
        try:
            change = services.set_default_version(version=version, actor=request.user)
        except ServingError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return
        text = f"Promoted: {change}." if change else f"{version} already is the default."
        self.message_user(request, text, messages.SUCCESS)


@admin.register(DefaultChange)
class DefaultChangeAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "registered_model",
        "action",
        "from_version",
        "to_version",
        "actor",
    ]
    list_filter = ["registered_model", "action"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
