"""Every write to the registry: register a version, move the default pointer, mark failures."""

import logging

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.db.models import Max

from . import artifacts, loader, onnx, schema, serving, storage
from .errors import (
    ArtifactInvalid,
    InvalidModelName,
    ModelUnavailable,
    NoPreviousVersion,
    OnnxUnavailable,
    TaskMismatch,
    VersionNotReady,
)
from .models import ArtifactFormat, DefaultChange, ModelVersion, RegisteredModel, VersionStatus
from .predictors import OnnxWithFallback, SklearnPredictor

logger = logging.getLogger(__name__)

ONNX_NOT_TRIED = "Not tried: ONNX_ENABLED was false at upload."


def _check_name(name: str) -> None:
    try:
        validate_slug(name)
    except ValidationError:
        raise InvalidModelName(
            f"{name[:100]!r} is not a valid model name: use letters, digits, '-' and '_'."
        ) from None
    if len(name) > 100:
        raise InvalidModelName("A model name has at most 100 characters.")


def _onnx_fields(conversion: onnx.Conversion | None) -> dict:
    """The version fields for a conversion outcome (its file written when it is usable)."""
    if conversion is None:
        return {"onnx_detail": ONNX_NOT_TRIED}
    fields = {
        "onnx_detail": conversion.detail,
        "onnx_is_exact": conversion.is_exact,
        "onnx_max_difference": conversion.max_difference,
        "onnx_rows_compared": conversion.rows_compared,
        "onnx_single_row_latency_ms": conversion.single_row_latency_ms,
        "onnx_checker": conversion.checker,
    }
    if conversion.data is not None:
        fields["onnx_artifact"], fields["onnx_sha256"] = storage.save_content(
            conversion.data, folder="artifacts", extension="onnx"
        )
    return fields


def _store_files(validated: artifacts.ValidatedArtifact, sample: bytes | None) -> dict:
    """Write the artifact, its skops and ONNX conversions and the sample; return the fields."""
    fields = {"format": validated.format, "size_bytes": len(validated.data)}
    fields["artifact"], fields["sha256"] = storage.save_content(
        validated.data, folder="artifacts", extension=validated.format
    )
    if validated.format != ArtifactFormat.SKOPS:
        fields["serving_artifact"], fields["serving_sha256"] = storage.save_content(
            validated.serving_data, folder="artifacts", extension="skops"
        )
    if sample:
        fields["sample"], _ = storage.save_content(sample, folder="samples", extension="csv")
    return fields | _onnx_fields(validated.onnx)


def _delete_unreferenced(fields: dict) -> None:
    """Remove stored files that no version row points at (after a failed registration)."""
    for key in ("artifact", "serving_artifact", "sample", "onnx_artifact"):
        name = fields.get(key)
        if not name:
            continue
        in_use = ModelVersion.objects.filter(**{key: name}).exists()
        if key == "artifact":
            in_use = in_use or ModelVersion.objects.filter(serving_artifact=name).exists()
        if not in_use:
            storage.delete_content(name)


def register_version(
    *,
    model_name: str,
    artifact: bytes,
    filename: str = "",
    format: str | None = None,
    sample: bytes | None = None,
    notes: str = "",
    description: str = "",
    created_by=None,
    validated: artifacts.ValidatedArtifact | None = None,
) -> ModelVersion:
    """Validate an artifact and store it as the next version of `model_name` (created if new).

    Nothing is stored when a check fails. Pass `validated` when the caller (the admin form)
    already ran `artifacts.validate_artifact` on the same bytes.
    """
    _check_name(model_name)
    if validated is None:
        artifact_format = format or artifacts.detect_format(filename, artifact)
        validated = artifacts.validate_artifact(artifact, format=artifact_format, sample=sample)
    task = validated.output_info["task"]
    existing = RegisteredModel.objects.filter(name=model_name).first()
    if existing and existing.task != task:
        raise TaskMismatch(
            f"Model {model_name!r} is a {existing.task} model; this artifact is a {task} model."
        )
    fields = _store_files(validated, sample)
    try:
        version = _create_version(
            model_name=model_name,
            task=task,
            description=description,
            fields=fields,
            validated=validated,
            notes=notes,
            created_by=created_by,
        )
    except BaseException:
        _delete_unreferenced(fields)
        raise
    logger.info("registered %s (sha256 %s)", version, version.sha256)
    return version


@transaction.atomic
def _create_version(*, model_name, task, description, fields, validated, notes, created_by):
    registered_model, created = RegisteredModel.objects.get_or_create(
        name=model_name, defaults={"task": task, "description": description}
    )
    # Lock the model row so two uploads never take the same version number.
    registered_model = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
    if registered_model.task != task:
        raise TaskMismatch(f"Model {model_name!r} is a {registered_model.task} model.")
    last = registered_model.versions.aggregate(last=Max("number"))["last"] or 0
    return ModelVersion.objects.create(
        registered_model=registered_model,
        number=last + 1,
        input_schema=validated.input_schema,
        output_info=validated.output_info,
        single_row_latency_ms=validated.single_row_latency_ms,
        notes=notes,
        created_by=created_by,
        status=VersionStatus.READY,
        **fields,
    )


def convert_to_onnx(*, version: ModelVersion) -> ModelVersion:
    """Convert and check a stored version again (one checked by an older checker, or never),
    on its sample or rows made from its schema. Afterwards ONNX serves by default exactly when
    the check found it exact; an inexact one keeps serving only where it was opted in."""
    estimator = artifacts.load_skops(artifacts.read_verified(version))
    sample = storage.read_content(version.sample.name) if version.sample else None
    conversion = onnx.convert(
        estimator,
        schema=version.input_schema,
        output=version.output_info,
        reference=schema.reference_rows(version.input_schema, sample),
    )
    fields = {"onnx_artifact": "", "onnx_sha256": "", "onnx_max_difference": None}
    fields |= {"onnx_single_row_latency_ms": None, "onnx_rows_compared": None}
    fields |= _onnx_fields(conversion)
    previous = version.onnx_artifact.name
    ModelVersion.objects.filter(pk=version.pk).update(**fields)
    version.refresh_from_db()
    if previous and previous != version.onnx_artifact.name:
        _delete_unreferenced({"onnx_artifact": previous})
    logger.info("%s: ONNX %s", version, conversion.detail)
    return version


def set_serving_options(*, version: ModelVersion, **options) -> ModelVersion:
    """Change how a version is served (approximate opt-in, batching, cache): never what it
    is. The approximate path can only be opted in to where an ONNX model exists."""
    unknown = options.keys() - set(serving.SERVING_OPTIONS)
    if unknown:
        raise TypeError(f"not serving options: {', '.join(sorted(unknown))}")
    if options.get("serves_approximate") and not version.onnx_artifact:
        raise OnnxUnavailable(
            f"{version} has no ONNX model to serve: {version.onnx_detail or 'not converted'}"
        )
    for name, value in options.items():
        setattr(version, name, value)
    version.save(update_fields=sorted(options))
    serving.forget_plan(version)
    logger.info("%s: serving options %s", version, options)
    return version


def mark_version_failed(*, version: ModelVersion, reason: str) -> None:
    """Record that a version's artifact cannot be served; its requests get a 503."""
    ModelVersion.objects.filter(pk=version.pk).update(
        status=VersionStatus.FAILED, status_reason=reason
    )
    version.status, version.status_reason = VersionStatus.FAILED, reason
    logger.error("%s marked failed: %s", version, reason)


def load_predictor(*, version: ModelVersion) -> SklearnPredictor | OnnxWithFallback:
    """The version's predictor from this process's cache (`loader.get_predictor`); a stored
    artifact that no longer loads marks the version failed, and its requests get a 503."""
    try:
        return loader.get_predictor(version)
    except loader.LoadFailed as exc:
        mark_version_failed(version=version, reason=exc.reason)
        raise


def warm_defaults() -> None:
    """Load every model's default version into this process's cache (at worker start), and
    mark the ones whose artifact no longer loads failed (`loader.warm_defaults`)."""
    for failure in loader.warm_defaults():
        mark_version_failed(version=failure.version, reason=failure.reason)


def _ensure_servable(version: ModelVersion) -> None:
    """Refuse a version that is failed or whose stored artifact no longer matches its hash."""
    if version.status != VersionStatus.READY:
        raise VersionNotReady(f"{version} is {version.status}: {version.status_reason}")
    try:
        artifacts.read_verified(version)
    except ArtifactInvalid as exc:
        mark_version_failed(version=version, reason=exc.detail)
        raise ModelUnavailable(f"{version} cannot be served: {exc.detail}") from None


def set_default_version(
    *, version: ModelVersion, actor=None, action: str = DefaultChange.Action.PROMOTE
) -> DefaultChange | None:
    """Make `version` its model's default (atomic, audited); None when it already is."""
    version.refresh_from_db()
    _ensure_servable(version)
    with transaction.atomic():
        registered_model = RegisteredModel.objects.select_for_update().get(
            pk=version.registered_model_id
        )
        previous = registered_model.versions.filter(is_default=True).first()
        if previous and previous.pk == version.pk:
            return None
        registered_model.versions.filter(is_default=True).update(is_default=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_default=True)
        version.is_default = True
        change = DefaultChange.objects.create(
            registered_model=registered_model,
            action=action,
            from_version=previous,
            to_version=version,
            actor=actor,
        )
    logger.info("%s: default %s -> %s by %s", registered_model, previous, version, actor)
    return change


def rollback_default(*, registered_model: RegisteredModel, actor=None) -> DefaultChange:
    """Make the version that was default before the current one's promotion the default again.

    Repeated roll-backs walk back through the promotions: v3 -> v2 -> v1.
    """
    current = registered_model.versions.filter(is_default=True).first()
    promotion = (
        registered_model.default_changes.filter(
            action=DefaultChange.Action.PROMOTE, to_version=current
        ).first()
        if current
        else None
    )
    if promotion is None or promotion.from_version is None:
        raise NoPreviousVersion(
            f"Model {registered_model.name!r} has no earlier default to roll back to."
        )
    return set_default_version(
        version=promotion.from_version, actor=actor, action=DefaultChange.Action.ROLLBACK
    )
