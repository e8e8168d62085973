"""The upload sandbox: artifacts whose callables write files are refused and write nothing, the
reviewed pure functions load and predict as they do in-process, and the jailed child cannot
write outside its work dir even when hostile code does run in it."""

import dataclasses
import functools
import json
import operator
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.io
import sklearn.datasets
import skops.io
from sklearn.base import clone
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.feature_selection import SelectKBest, f_regression
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from modelregistry import artifacts, demo, onnx, schema
from modelregistry.errors import ArtifactInvalid, UntrustedType
from modelregistry.models import ArtifactFormat
from modelregistry.sandbox import check_child, jail, trust

FEATURES = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
TARGET = [1.0, 2.0, 3.0, 4.0]
# The smoke rows: as many as FEATURES, so a gadget that needs `y` of that length gets it.
SAMPLE = FEATURES.to_csv(index=False).encode()
DUMP_SVMLIGHT = "sklearn.datasets._svmlight_format_io.dump_svmlight_file"
REPO = Path(__file__).resolve().parents[2]


def fitted(step) -> Pipeline:
    """`step`, then a LinearRegression, fitted on FEATURES."""
    return Pipeline([("step", step), ("regressor", LinearRegression())]).fit(FEATURES, TARGET)


def calling(func, **kw_args) -> Pipeline:
    """A fitted pipeline whose FunctionTransformer calls `func(X, **kw_args)` at predict time.

    Fitted with the identity first, so that building the artifact here writes nothing.
    """
    pipeline = fitted(FunctionTransformer(None, validate=True))
    pipeline.named_steps["step"].set_params(func=func, kw_args=kw_args or None)
    return pipeline


def selecting_columns_with(selector) -> Pipeline:
    """A fitted pipeline whose ColumnTransformer's columns are the callable `selector`."""
    pipeline = fitted(ColumnTransformer([("keep", "passthrough", ["a", "b"])]))
    pipeline.named_steps["step"].set_params(transformers=[("keep", "passthrough", selector)])
    return pipeline


def scoring_with(score_func) -> Pipeline:
    """A fitted pipeline whose SelectKBest's `score_func` is `score_func`."""
    pipeline = fitted(SelectKBest(f_regression, k=1))
    pipeline.named_steps["step"].set_params(score_func=score_func)
    return pipeline


# Artifacts made only of scikit-learn, numpy, scipy and joblib names whose code writes `path`
# when the model is used, with the name the refusal must give.
GADGETS = {
    "FunctionTransformer(dump_svmlight_file)": (
        lambda path: calling(sklearn.datasets.dump_svmlight_file, y=[0, 1, 0, 1], f=str(path)),
        DUMP_SVMLIGHT,
    ),
    "FunctionTransformer(numpy.save)": (
        lambda path: calling(functools.partial(np.save, str(path))),
        "numpy.save",
    ),
    "FunctionTransformer(numpy.savetxt)": (
        lambda path: calling(functools.partial(np.savetxt, str(path))),
        "numpy.savetxt",
    ),
    "FunctionTransformer(numpy.ndarray.tofile)": (
        lambda path: calling(np.ndarray.tofile, file=str(path)),
        "builtins.method_descriptor",  # how skops names an unbound C method
    ),
    "FunctionTransformer(methodcaller('tofile'))": (
        lambda path: calling(operator.methodcaller("tofile", str(path))),
        "operator.methodcaller",
    ),
    "FunctionTransformer(scipy.io.savemat)": (
        lambda path: calling(functools.partial(scipy.io.savemat, str(path))),
        "scipy.io.matlab._mio.savemat",
    ),
    "FunctionTransformer(joblib.dump)": (
        lambda path: calling(joblib.dump, filename=str(path)),
        "joblib.numpy_pickle.dump",
    ),
    "ColumnTransformer(columns=numpy.save)": (
        lambda path: selecting_columns_with(functools.partial(np.save, str(path))),
        "numpy.save",
    ),
    "SelectKBest(score_func=dump_svmlight_file)": (
        lambda path: scoring_with(
            functools.partial(sklearn.datasets.dump_svmlight_file, f=str(path))
        ),
        DUMP_SVMLIGHT,
    ),
}


def run_unconfined(pipeline) -> None:
    """Use the pipeline as a web process would have before the sandbox: predict and refit."""
    for use in (lambda: pipeline.predict(FEATURES), lambda: clone(pipeline).fit(FEATURES, TARGET)):
        try:
            use()
        except Exception:  # most gadgets return None and break the pipeline after writing
            pass


@pytest.mark.parametrize("label", GADGETS)
def test_each_gadget_really_writes_when_used_unconfined(label, tmp_path):
    build, _ = GADGETS[label]
    target = tmp_path / "owned"
    run_unconfined(build(target))
    written = [path for path in tmp_path.iterdir() if path.name.startswith("owned")]
    assert written, f"{label} wrote nothing: it does not show the hole it is meant to"


@pytest.mark.parametrize("label", GADGETS)
def test_a_file_writing_callable_is_refused_and_writes_nothing(label, settings, tmp_path):
    settings.MODELPORT_TRUSTED_TYPES = []
    build, refused = GADGETS[label]
    target = tmp_path / "owned"
    data = skops.io.dumps(build(target))
    with pytest.raises(UntrustedType) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.SKOPS, sample=SAMPLE)
    assert caught.value.code == "untrusted_type"
    assert refused in [error["message"] for error in caught.value.errors]
    assert refused in caught.value.detail
    assert list(tmp_path.iterdir()) == []


def test_the_allowlist_names_exact_objects_not_prefixes():
    assert trust.is_trusted_type("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
    assert trust.is_trusted_type("sklearn.feature_selection._univariate_selection.f_regression")
    for name in [
        DUMP_SVMLIGHT,
        "sklearn.utils._testing.assert_run_python_script_without_output",
        "sklearn.preprocessing._data.StandardScaler.transform",  # a bound method
        "sklearn.metrics._dist_metrics.PyFuncDistance64",  # calls a Python function
        "numpy.save",
        "numpy.memmap",
    ]:
        assert not trust.is_trusted_type(name), name
    assert trust.is_trusted_type("numpy.save", extra=["numpy.save"])


@pytest.mark.parametrize(
    ("label", "trusted"),
    [
        ("FunctionTransformer(dump_svmlight_file)", [DUMP_SVMLIGHT]),
        ("FunctionTransformer(numpy.save)", ["functools.partial", "numpy.save"]),
        ("FunctionTransformer(joblib.dump)", ["joblib.numpy_pickle.dump"]),
    ],
)
def test_a_gadget_an_operator_trusted_by_mistake_still_writes_nothing(
    label, trusted, settings, tmp_path
):
    # Past the allowlist the gadget runs, in the sandbox: Landlock refuses the write.
    settings.MODELPORT_TRUSTED_TYPES = trusted
    build, _ = GADGETS[label]
    data = skops.io.dumps(build(tmp_path / "owned"))
    with pytest.raises(ArtifactInvalid) as caught:
        artifacts.validate_artifact(data, format=ArtifactFormat.SKOPS, sample=SAMPLE)
    assert "PermissionError" in caught.value.detail or "Permission denied" in caught.value.detail
    assert list(tmp_path.iterdir()) == []


ALLOWED = {
    "FunctionTransformer(numpy.log1p)": lambda: FunctionTransformer(np.log1p),
    "FunctionTransformer(numpy.clip)": lambda: FunctionTransformer(
        np.clip, kw_args={"a_min": 0.5, "a_max": 3.0}
    ),
    "SelectKBest(f_regression)": lambda: SelectKBest(f_regression, k=1),
    "ColumnTransformer(make_column_selector)": lambda: ColumnTransformer(
        [("scaled", StandardScaler(), make_column_selector(dtype_include=np.number))]
    ),
}


@pytest.mark.parametrize("label", ALLOWED)
def test_reviewed_pure_functions_are_accepted_and_predict_as_in_process(label, settings):
    settings.MODELPORT_TRUSTED_TYPES = []
    model = fitted(ALLOWED[label]())
    validated = artifacts.validate_artifact(skops.io.dumps(model), format=ArtifactFormat.SKOPS)
    assert [feature["name"] for feature in validated.input_schema["features"]] == ["a", "b"]
    assert validated.output_info["task"] == "regression"
    assert validated.single_row_latency_ms > 0
    loaded = artifacts.load_skops(validated.serving_data)  # a web process, on a stored version
    np.testing.assert_array_equal(loaded.predict(FEATURES), model.predict(FEATURES))


def test_the_onnx_conversion_comes_back_whole(iris_artifact, settings):
    settings.ONNX_ENABLED = True
    features, _ = demo.iris_data()
    sample = features.to_csv(index=False).encode()
    validated = artifacts.validate_artifact(
        iris_artifact, format=ArtifactFormat.SKOPS, sample=sample
    )
    estimator = artifacts.load_skops(iris_artifact)
    here = onnx.convert(
        estimator,
        schema=validated.input_schema,
        output=validated.output_info,
        reference=schema.reference_rows(validated.input_schema, sample),
    )
    assert isinstance(validated.onnx, onnx.Conversion)
    assert validated.onnx.is_exact and here.is_exact
    assert validated.onnx.data == here.data
    assert (validated.onnx.max_difference, validated.onnx.detail) == (
        here.max_difference,
        here.detail,
    )
    assert validated.onnx.single_row_latency_ms > 0


@dataclasses.dataclass(frozen=True)
class FutureConversion:
    """Conversion with fields it may grow: the codec must carry them without a change."""

    data: bytes | None
    matches: bool
    extra_model: bytes
    ratio: float
    notes: list


def test_dataclass_fields_cross_the_boundary_generically(tmp_path):
    original = FutureConversion(b"\x00onnx", True, b"more", float("nan"), ["a", 1])
    fields = check_child.encode_fields(original, str(tmp_path), prefix="onnx.")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "onnx.data.bin",
        "onnx.extra_model.bin",
    ]
    rebuilt = FutureConversion(**check_child.decode_fields(fields, str(tmp_path)))
    assert (rebuilt.data, rebuilt.extra_model, rebuilt.notes) == (b"\x00onnx", b"more", ["a", 1])
    assert np.isnan(rebuilt.ratio) and rebuilt.matches is True
    empty = check_child.encode_fields(
        FutureConversion(None, False, b"", 0.0, []), str(tmp_path), "x."
    )
    assert check_child.decode_fields(empty, str(tmp_path))["data"] is None


def test_the_parent_reads_no_file_outside_the_work_dir_for_the_child(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "onnx.data.bin").symlink_to(secret)
    with pytest.raises(ValueError):
        check_child.decode_fields({"data": {"bytes_file": "../secret"}}, str(workdir))
    with pytest.raises(OSError):  # O_NOFOLLOW: a link the child made is not followed
        check_child.decode_fields({"data": {"bytes_file": "onnx.data.bin"}}, str(workdir))


@pytest.fixture
def listening_port():
    """A TCP port on 127.0.0.1 that accepts connections (from anyone not jailed)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def probe_writes(tmp_path, port: int, *, jailed: bool) -> dict:
    """Run tests.unit.jail_probe's write attempts in a fresh work dir, jailed or not."""
    outside = tmp_path / "outside.txt"
    with tempfile.TemporaryDirectory(prefix="modelport-probe-") as workdir:
        args = ["writes", str(Path(workdir, "inside.txt")), str(outside), str(port)]
        if jailed:
            finished = jail.run(
                "tests.unit.jail_probe", args, workdir=workdir, timeout=60, memory_mb=1024
            )
        else:
            command = [sys.executable, "-m", "tests.unit.jail_probe", *args]
            finished = subprocess.run(
                command,
                cwd=workdir,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        assert finished.returncode == 0, finished.stderr
        return {
            **json.loads(Path(workdir, "outcome.json").read_text()),
            "inside_exists": Path(workdir, "inside.txt").exists(),
            "stderr": finished.stderr,
        }


def test_the_probe_writes_and_connects_when_not_jailed(tmp_path, listening_port):
    result = probe_writes(tmp_path, listening_port, jailed=False)
    assert result["outside"] == result["connect"] == "done"
    assert (tmp_path / "outside.txt").exists()


def test_a_jailed_child_cannot_write_outside_its_work_dir_even_when_code_runs(
    tmp_path, listening_port
):
    assert jail.landlock_abi() >= 1, "this kernel has no Landlock: the sandbox cannot confine"
    result = probe_writes(tmp_path, listening_port, jailed=True)
    assert result["inside"] == "done" and result["inside_exists"]
    for attempt in ("outside", "mkdir", "symlink"):
        assert result[attempt].startswith("PermissionError"), result
    assert list(tmp_path.iterdir()) == []
    assert result["connect"].startswith("PermissionError")  # Landlock ABI >= 4: no TCP
    assert int(result["capabilities"], 16) == 0
    assert "DJANGO_SECRET_KEY" not in result["environment"]
    assert "DATABASE_URL" not in result["environment"]
    assert "jail: Landlock ABI" in result["stderr"]


def test_a_child_past_its_time_is_stopped_as_artifact_invalid(tmp_path):
    with tempfile.TemporaryDirectory() as workdir:
        with pytest.raises(ArtifactInvalid, match="took longer than 1 s"):
            artifacts._run_sandbox(
                "tests.unit.jail_probe",
                ["sleep", "60"],
                workdir=workdir,
                timeout=1,
                what="Checking the artifact",
            )


def test_a_child_past_its_memory_is_stopped_as_artifact_invalid(settings):
    settings.SANDBOX_MEMORY_MB = 300
    with tempfile.TemporaryDirectory() as workdir:
        with pytest.raises(ArtifactInvalid, match="ran out of memory \\(the limit is 300 MiB\\)"):
            artifacts._run_sandbox(
                "tests.unit.jail_probe",
                ["memory", "1024"],
                workdir=workdir,
                timeout=60,
                what="Checking the artifact",
            )


def test_validation_past_its_time_or_memory_is_artifact_invalid(iris_artifact, settings):
    settings.SANDBOX_TIMEOUT_SECONDS = 1  # less than importing scikit-learn takes
    with pytest.raises(ArtifactInvalid, match="Checking the artifact took longer than 1 s"):
        artifacts.validate_artifact(iris_artifact, format=ArtifactFormat.SKOPS)
    settings.SANDBOX_TIMEOUT_SECONDS = 120
    settings.SANDBOX_MEMORY_MB = 256  # less than scikit-learn needs to import
    with pytest.raises(ArtifactInvalid, match="Checking the artifact .*memory"):
        artifacts.validate_artifact(iris_artifact, format=ArtifactFormat.SKOPS)
