"""Train, register and promote the demo models (idempotent: a second run changes nothing)."""

from django.core.management.base import BaseCommand

from modelregistry import demo, services
from modelregistry.models import ModelVersion


class Command(BaseCommand):
    help = "Register and promote the demo models house-prices and iris when they are missing."

    def handle(self, *args, **options):
        for name, spec in demo.DEMOS.items():
            existing = ModelVersion.objects.filter(registered_model__name=name).first()
            if existing is not None:
                self.stdout.write(f"demo model {name}: already registered")
                continue
            self.stdout.write(f"demo model {name}: training ...")
            artifact, sample = demo.demo_artifact(name)
            version = services.register_version(
                model_name=name,
                artifact=artifact,
                filename=f"{name}.skops",
                sample=sample,
                description=spec["description"],
                notes="Demo model trained by setup_demo.",
            )
            services.set_default_version(version=version)
            self.stdout.write(self.style.SUCCESS(f"demo model {name}: v{version.number} default"))
