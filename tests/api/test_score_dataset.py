"""Scoring a Parquet dataset with Dask: a real local cluster of two worker processes that share
this test's database and storage, a dataset of several files with bad rows, compared with the
version's estimator in-process."""

import numpy as np
import pytest
import skops.io
from django.core.management import CommandError, call_command

from modelregistry import demo, services
from predictions import lake
from predictions.models import DatasetRun, JobStatus
from predictions.services import datasets
from tests.conftest import validated_once
from tests.datasets import (
    FILES,
    PARTITION_ROWS,
    RELATIVE,
    check_house_outputs,
    house_dataset,
    part_names,
    read_dataset,
)

pytestmark = pytest.mark.django_db


def test_predictions_equal_the_estimator_and_bad_rows_go_to_the_errors(
    dask_client, registered_version, house_model, tmp_path
):
    rows = house_dataset(tmp_path / "lake")
    run = datasets.score_dataset(
        version=registered_version,
        input=str(tmp_path / "lake"),
        output=str(tmp_path / "scored"),
        client=dask_client,
        partition_rows=PARTITION_ROWS,
    )

    scored = read_dataset(tmp_path / "scored")
    errors = read_dataset(tmp_path / "scored" / "_errors")
    assert list(scored.columns) == ["row", "prediction"]
    check_house_outputs(scored, errors, rows, model=house_model, version=registered_version)

    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED
    assert (run.rows_total, run.rows_done, run.rows_failed) == (300, 300, 4)
    assert run.partitions_total == run.partitions_done == 6
    assert run.workers == 2 and run.scheduler == "local"
    assert run.progress == 1.0
    assert run.started_at <= run.finished_at
    assert sorted(p.name for p in (tmp_path / "scored").iterdir()) == ["_errors", *part_names(6)]
    assert sorted(p.name for p in (tmp_path / "scored" / "_errors").iterdir()) == part_names(6)


def test_a_classifier_gets_its_probabilities_and_an_id_column(dask_client, tmp_path):
    artifact = skops.io.dumps(demo.train_iris())
    version = services.register_version(
        model_name="iris",
        artifact=artifact,
        filename="iris.skops",
        validated=validated_once(artifact, None),
    )
    features, _ = demo.iris_data()
    features = features.assign(flower=[f"f{index}" for index in range(len(features))])
    (tmp_path / "iris").mkdir()
    for index, start in enumerate(range(0, 150, 50)):
        features.iloc[start : start + 50].to_parquet(tmp_path / "iris" / f"{index}.parquet")

    run = datasets.score_dataset(
        version=version,
        input=str(tmp_path / "iris" / "*.parquet"),
        output=str(tmp_path / "scored"),
        errors_output=str(tmp_path / "bad"),
        id_column="flower",
        client=dask_client,
    )

    scored = read_dataset(tmp_path / "scored")
    estimator = demo.train_iris()
    inputs = features.drop(columns="flower")
    assert scored["id"].tolist() == features["flower"].tolist()
    assert scored["prediction"].tolist() == estimator.predict(inputs).tolist()
    probabilities = scored[[f"probability_{label}" for label in estimator.classes_]]
    np.testing.assert_allclose(probabilities, estimator.predict_proba(inputs), rtol=RELATIVE)
    assert read_dataset(tmp_path / "bad").empty
    assert (run.rows_done, run.rows_failed, run.partitions_total) == (150, 0, 3)


def test_the_command_scores_on_a_scheduler_by_address_and_the_admin_shows_the_run(
    dask_client, registered_version, house_model, tmp_path, capsys, admin_client
):
    rows = house_dataset(tmp_path / "lake", ids=True)
    call_command(
        "score_dataset",
        "house-prices:1",
        "--id-column",
        "house_id",
        "--input",
        str(tmp_path / "lake"),
        "--output",
        str(tmp_path / "scored"),
        "--errors",
        str(tmp_path / "bad"),
        "--scheduler",
        dask_client.scheduler.address,
    )

    scored = read_dataset(tmp_path / "scored")
    assert scored["id"].tolist() == rows["house_id"].tolist()
    good = scored["prediction"].notna().to_numpy()
    features = rows.drop(columns="house_id")[good]
    np.testing.assert_allclose(
        scored["prediction"][good], house_model.predict(features), rtol=RELATIVE, atol=0
    )
    # Some partitions have no bad rows: their (empty) part files still read with the others.
    errors = read_dataset(tmp_path / "bad")
    assert sorted(set(zip(errors["row"], errors["id"], strict=True))) == [
        (3, "h3"),
        (64, "h64"),
        (130, "h130"),
        (299, "h299"),
    ]
    run = DatasetRun.objects.get()
    assert run.scheduler == dask_client.scheduler.address
    assert (run.status, run.rows_done, run.rows_failed) == (JobStatus.SUCCEEDED, 300, 4)
    assert f"Scored 300 rows of {registered_version} (4 failed)" in capsys.readouterr().out
    listing = admin_client.get("/admin/predictions/datasetrun/")
    assert listing.status_code == 200 and str(run.id) in listing.content.decode()
    detail = admin_client.get(f"/admin/predictions/datasetrun/{run.id}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert admin_client.get("/admin/predictions/datasetrun/add/").status_code == 403


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no-such-model", "model_not_found: No model named 'no-such-model'."),
        ("house-prices:7", "version_not_found: Model 'house-prices' has no version 7."),
        ("house-prices:x", "the version after ':' is a number"),
    ],
)
def test_an_unknown_model_or_version_is_an_error_and_writes_nothing(
    registered_version, tmp_path, model, message
):
    house_dataset(tmp_path / "lake")
    with pytest.raises(CommandError, match=message):
        call_command(
            "score_dataset",
            model,
            "--input",
            str(tmp_path / "lake"),
            "--output",
            str(tmp_path / "scored"),
        )
    assert not (tmp_path / "scored").exists()
    assert not DatasetRun.objects.exists()


def test_a_run_that_fails_in_a_worker_is_recorded_and_leaves_no_output(
    dask_client, registered_version, tmp_path
):
    house_dataset(tmp_path / "lake")
    with pytest.raises(Exception, match="no column 'house_id'") as raised:
        datasets.score_dataset(
            version=registered_version,
            input=str(tmp_path / "lake"),
            output=str(tmp_path / "scored"),
            id_column="house_id",
            client=dask_client,
        )
    assert raised.value.code == "invalid_input"
    assert not (tmp_path / "scored").exists()
    run = DatasetRun.objects.get()
    assert run.status == JobStatus.FAILED
    assert "no column 'house_id'" in run.failure_reason
    assert run.finished_at is not None


def test_an_output_that_holds_files_or_a_missing_or_unreadable_input_is_refused(
    dask_client, registered_version, tmp_path
):
    house_dataset(tmp_path / "lake")
    (tmp_path / "scored").mkdir()
    (tmp_path / "scored" / "old.parquet").write_text("keep me")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "rows.parquet").write_text("not parquet")
    cases = [
        (str(tmp_path / "lake"), "output_exists"),
        (str(tmp_path / "nowhere"), "dataset_not_found"),
        (str(tmp_path / "lake" / "*.csv"), "empty_input"),
        (str(tmp_path / "junk"), "malformed_request"),
    ]
    for source, code in cases:
        with pytest.raises(Exception) as raised:
            datasets.score_dataset(
                version=registered_version,
                input=source,
                output=str(tmp_path / "scored"),
                client=dask_client,
            )
        assert raised.value.code == code
    assert (tmp_path / "scored" / "old.parquet").read_text() == "keep me"
    assert not DatasetRun.objects.exists()


def test_the_plan_reads_footers_only_and_numbers_rows_across_files(tmp_path):
    house_dataset(tmp_path / "lake")
    plan = lake.plan_dataset(str(tmp_path / "lake"), partition_rows=PARTITION_ROWS)
    assert [name.rsplit("/", 1)[-1] for name in plan.files] == list(FILES)
    assert [(p.row_groups, p.start, p.rows) for p in plan.partitions] == [
        ((0,), 0, 50),
        ((1,), 50, 50),
        ((2,), 100, 20),
        ((0,), 120, 100),
        ((0,), 220, 40),
        ((1,), 260, 40),
    ]
    frame = lake.dataset_frame(plan)
    assert frame.npartitions == 6
    assert frame.divisions == (0, 50, 100, 120, 220, 260, 299)


def test_the_bench_scores_a_small_dataset_correctly(
    dask_client, registered_version, house_model, tmp_path
):
    from bench import datasets as bench

    names = [feature["name"] for feature in registered_version.input_schema["features"]]
    bench.write_dataset(tmp_path / "lake", rows=2_000, files=3, names=names)
    limit, expected = bench.in_process(house_model, tmp_path / "lake", names)
    figures = bench.score_with_client(
        dask_client, registered_version, tmp_path / "lake", tmp_path / "scored", expected
    )
    assert figures["correct"]
    assert (figures["rows"], figures["rows_failed"], figures["partitions"]) == (2_000, 0, 3)
    assert not DatasetRun.objects.exists()  # the bench leaves no rows behind
    (row,) = bench.report(limit, [figures], None)
    assert row.label == "Dask, 2 worker(s)" and row.measured > 0
