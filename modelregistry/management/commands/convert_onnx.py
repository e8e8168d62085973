"""Convert and check stored versions again: never checked, checked by an older checker, or all."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from core.errors import ServingError
from modelregistry import onnx, services, serving
from modelregistry.models import ModelVersion, VersionStatus


class Command(BaseCommand):
    help = (
        "Convert versions to ONNX and check them against scikit-learn; ONNX serves a version "
        "by default afterwards exactly when every answer was exact (1e-9). Without arguments: "
        "every ready version never checked; --outdated: also those an older checker checked."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", nargs="?", help="Only this model's versions.")
        parser.add_argument("--number", type=int, help="Only this version number.")
        parser.add_argument("--again", action="store_true", help="Also versions already checked.")
        parser.add_argument(
            "--outdated",
            action="store_true",
            help="Also versions checked by an older checker (scripts/setup runs this).",
        )

    def handle(self, *args, model=None, number=None, again=False, outdated=False, **options):
        if not settings.ONNX_ENABLED:
            if outdated:
                return  # the set-up's upgrade step: nothing serves ONNX, nothing to check
            raise CommandError("ONNX_ENABLED is false: nothing would serve the conversion.")
        versions = ModelVersion.objects.select_related("registered_model").filter(
            status=VersionStatus.READY
        )
        if model:
            versions = versions.filter(registered_model__name=model)
        if number is not None:
            versions = versions.filter(number=number)
        if outdated and not again:
            never = Q(onnx_detail__in=["", services.ONNX_NOT_TRIED])
            versions = versions.filter(never | ~Q(onnx_checker=onnx.CHECKER))
        elif not again:
            versions = versions.filter(onnx_detail__in=["", services.ONNX_NOT_TRIED])
        for item in versions.order_by("registered_model__name", "number"):
            try:
                converted = services.convert_to_onnx(version=item)
            except ServingError as exc:
                self.stderr.write(f"{item}: {exc.detail}")
                continue
            path = serving.serving_path(converted)
            self.stdout.write(f"{item}: serves with {path}: {converted.onnx_detail}")
