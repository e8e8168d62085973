"""Default pointer: one per model in the database, audited changes, seen by other processes."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from modelregistry import services
from modelregistry.errors import NoPreviousVersion, VersionNotReady
from modelregistry.models import DefaultChange, ModelVersion, VersionStatus

ROOT = Path(__file__).resolve().parents[2]


def add_version(artifact):
    return services.register_version(
        model_name="house-prices", artifact=artifact, filename="house.skops"
    )


@pytest.mark.django_db
def test_two_defaults_are_impossible_in_the_database(registered_version, house_artifact):
    second = add_version(house_artifact)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(is_default=True)
    assert ModelVersion.objects.filter(is_default=True).count() == 1


@pytest.mark.django_db
def test_version_numbers_are_unique_per_model(registered_version):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(
            registered_model=registered_version.registered_model,
            number=registered_version.number,
            format="skops",
            artifact=registered_version.artifact.name,
            sha256=registered_version.sha256,
            size_bytes=1,
            input_schema={},
            output_info={},
        )


@pytest.mark.django_db
def test_promoting_the_default_again_changes_nothing(registered_version):
    assert services.set_default_version(version=registered_version) is None
    assert DefaultChange.objects.count() == 1


@pytest.mark.django_db
def test_failed_version_cannot_be_promoted(registered_version, house_artifact):
    second = add_version(house_artifact)
    services.mark_version_failed(version=second, reason="broken on purpose")
    with pytest.raises(VersionNotReady, match="broken on purpose"):
        services.set_default_version(version=second)
    assert ModelVersion.objects.get(is_default=True).pk == registered_version.pk


@pytest.mark.django_db
def test_repeated_rollbacks_walk_back_through_promotions(registered_version, house_artifact):
    second, third = add_version(house_artifact), add_version(house_artifact)
    services.set_default_version(version=second)
    services.set_default_version(version=third)
    model = registered_version.registered_model
    assert services.rollback_default(registered_model=model).to_version == second
    assert services.rollback_default(registered_model=model).to_version == registered_version
    with pytest.raises(NoPreviousVersion):
        services.rollback_default(registered_model=model)
    assert ModelVersion.objects.get(is_default=True).pk == registered_version.pk
    assert ModelVersion.objects.get(pk=third.pk).status == VersionStatus.READY


OBSERVER = """
import sys, time, django
django.setup()
from modelregistry.selectors import resolve_version
print(resolve_version("house-prices").number, flush=True)
target, deadline = int(sys.argv[1]), time.monotonic() + 20
while time.monotonic() < deadline:
    if resolve_version("house-prices").number == target:
        print("switched", flush=True)
        sys.exit(0)
    time.sleep(0.01)  # the observer polls like a steady stream of requests would
sys.exit(1)
"""


@pytest.mark.django_db(transaction=True)
def test_second_process_resolves_new_default_within_two_seconds(
    registered_version, house_artifact, process_env
):
    second = add_version(house_artifact)
    observer = subprocess.Popen(
        [sys.executable, "-c", OBSERVER, str(second.number)],
        cwd=ROOT,
        env=process_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The observer has resolved (and cached) v1 before the promotion.
        assert observer.stdout.readline().strip() == str(registered_version.number)
        promoted_at = time.monotonic()
        services.set_default_version(version=second)
        assert observer.stdout.readline().strip() == "switched"
        switch_seconds = time.monotonic() - promoted_at
    finally:
        observer.kill()
        observer.wait()
    assert switch_seconds < 2.0
