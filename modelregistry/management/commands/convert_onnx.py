"""Try the ONNX conversion for stored versions (those uploaded before it existed, or again)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modelregistry import services
from modelregistry.errors import ServingError
from modelregistry.models import ModelVersion, VersionStatus


class Command(BaseCommand):
    help = (
        "Convert versions to ONNX and check them against scikit-learn (ONNX_TOLERANCE); a "
        "version serves with ONNX afterwards exactly when it matched. Without arguments: every "
        "ready version never checked."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", nargs="?", help="Only this model's versions.")
        parser.add_argument("--number", type=int, help="Only this version number.")
        parser.add_argument("--again", action="store_true", help="Also versions already checked.")

    def handle(self, *args, model=None, number=None, again=False, **options):
        if not settings.ONNX_ENABLED:
            raise CommandError("ONNX_ENABLED is false: nothing would serve the conversion.")
        versions = ModelVersion.objects.select_related("registered_model").filter(
            status=VersionStatus.READY
        )
        if model:
            versions = versions.filter(registered_model__name=model)
        if number is not None:
            versions = versions.filter(number=number)
        if not again:
            versions = versions.filter(onnx_detail__in=["", services.ONNX_NOT_TRIED])
        for item in versions.order_by("registered_model__name", "number"):
            try:
                converted = services.convert_to_onnx(version=item)
            except ServingError as exc:
                self.stderr.write(f"{item}: {exc.detail}")
                continue
            path = "ONNX" if converted.serves_onnx else "scikit-learn"
            self.stdout.write(f"{item}: serves with {path}: {converted.onnx_detail}")
