"""The micro-batcher with real threads and the real test model: every caller gets exactly its
own rows back, a failing caller fails alone, versions never mix, and it can be switched off."""

import threading
import time

import numpy as np
import pytest

from modelregistry import demo, serving
from modelregistry.models import ModelVersion, RegisteredModel
from modelregistry.predictors import SklearnPredictor
from predictions import batching

THREADS = 16
CALLS_PER_THREAD = 10


class Recording:
    """A predictor wrapper that records the rows of each call (and can be slow or fail)."""

    def __init__(self, model, *, delay: float = 0.0, poison: float | None = None):
        self.model = SklearnPredictor(model)
        self.delay = delay
        self.poison = poison
        self.calls: list[int] = []
        self.failed_calls: list[int] = []
        self._lock = threading.Lock()

    def predict(self, features):
        rows = len(np.asarray(features["med_inc"]))  # a DataFrame or a dict of columns
        with self._lock:
            self.calls.append(rows)
        time.sleep(self.delay)  # a model call that takes a while, so that callers queue up
        if self.poison is not None and (np.asarray(features["med_inc"]) == self.poison).any():
            with self._lock:
                self.failed_calls.append(rows)
            raise ValueError("poisoned row")
        return self.model.predict(features)


def fake_version(pk: int, name: str = "house", number: int = 1, *, own=None, **model_settings):
    """An unsaved version (no database): `model_settings` on its model, `own` on itself."""
    model = RegisteredModel(name=name, **model_settings)
    return ModelVersion(pk=pk, number=number, registered_model=model, **(own or {}))


def call(version, model, rows):
    return batching.call(version, model, "predict", rows, len(rows))


def run_threads(target, count: int = THREADS) -> list:
    """Start `count` threads at once on target(index); return their results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def work(index):
        barrier.wait()
        try:
            results[index] = target(index)
        except Exception as exc:  # collected and checked by the test
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.fixture
def rows(house_rows):
    return demo.house_prices_data(rows=THREADS * CALLS_PER_THREAD, seed=21).drop(columns="price")


def test_concurrent_callers_get_exactly_their_own_predictions(house_model, rows, settings):
    settings.BATCH_MAX_ROWS, settings.BATCH_MAX_WAIT_MS = 64, 5
    model = Recording(house_model, delay=0.002)
    version = fake_version(pk=101)

    def caller(index):
        mine = rows.iloc[index * CALLS_PER_THREAD : (index + 1) * CALLS_PER_THREAD]
        return [call(version, model, mine.iloc[[i]]).tolist() for i in range(len(mine))]

    results = run_threads(caller)
    expected = house_model.predict(rows).tolist()
    for index, got in enumerate(results):
        assert not isinstance(got, Exception), got
        mine = expected[index * CALLS_PER_THREAD : (index + 1) * CALLS_PER_THREAD]
        assert [value[0] for value in got] == pytest.approx(mine, rel=0, abs=0)
    assert sum(model.calls) == len(rows)  # every row scored once
    assert max(model.calls) > 1  # callers were gathered
    assert len(model.calls) < len(rows)
    assert max(model.calls) <= settings.BATCH_MAX_ROWS


def test_a_call_that_fails_in_a_gathered_batch_fails_alone(house_model, rows, settings):
    settings.BATCH_MAX_ROWS, settings.BATCH_MAX_WAIT_MS = 64, 20
    poisoned = rows.copy()
    poisoned.loc[poisoned.index[3], "med_inc"] = -999.0
    model = Recording(house_model, delay=0.01, poison=-999.0)
    version = fake_version(pk=102)

    results = run_threads(lambda i: call(version, model, poisoned.iloc[[i]]))

    expected = house_model.predict(rows.iloc[:THREADS])
    for index, result in enumerate(results):
        if index == 3:
            assert isinstance(result, ValueError) and "poisoned" in str(result)
        else:
            assert not isinstance(result, Exception), result
            assert result.tolist() == [expected[index]]
    assert any(size > 1 for size in model.failed_calls)  # it was gathered, then split up


def test_versions_are_never_gathered_together(house_model, rows, settings):
    settings.BATCH_MAX_ROWS, settings.BATCH_MAX_WAIT_MS = 64, 5
    other_model = demo.train_house_prices(rows=600, max_iter=30)
    models = {1: Recording(house_model, delay=0.002), 2: Recording(other_model, delay=0.002)}
    versions = {1: fake_version(pk=201, number=1), 2: fake_version(pk=202, number=2)}

    def caller(index):
        number = 1 + index % 2
        row = rows.iloc[[index]]
        return number, call(versions[number], models[number], row).tolist()

    results = run_threads(caller)
    truth = {1: house_model.predict(rows), 2: other_model.predict(rows)}
    assert not np.allclose(truth[1][:THREADS], truth[2][:THREADS])
    for index, (number, got) in enumerate(results):
        assert got == [truth[number][index]]
    assert sum(models[1].calls) == sum(models[2].calls) == THREADS // 2


def test_a_lone_call_is_scored_in_one_call_of_its_own(house_model, rows, settings):
    model = Recording(house_model)
    result = call(fake_version(pk=301), model, rows.iloc[:3])
    assert result.tolist() == house_model.predict(rows.iloc[:3]).tolist()
    assert model.calls == [3]


def test_batching_is_off_for_big_calls_and_when_switched_off(settings):
    version = fake_version(pk=401)
    settings.BATCH_ENABLED, settings.BATCH_MAX_ROWS = True, 64
    assert batching.is_enabled(version, 64)
    assert not batching.is_enabled(version, 65)
    assert not batching.is_enabled(version, 0)
    assert batching.is_enabled(fake_version(pk=402, batch_max_rows=100), 100)  # the model's own
    assert not batching.is_enabled(fake_version(pk=403, batching_enabled=False), 1)
    settings.BATCH_ENABLED = False
    assert not batching.is_enabled(fake_version(pk=404), 1)


def test_a_version_overrides_its_models_batching_settings(settings):
    settings.BATCH_ENABLED, settings.BATCH_MAX_ROWS, settings.BATCH_MAX_WAIT_MS = True, 64, 2
    # The version switches batching off although its model has it on, and the other way round.
    assert not batching.is_enabled(fake_version(pk=501, own={"batching_enabled": False}), 1)
    on = fake_version(pk=502, batching_enabled=False, own={"batching_enabled": True})
    assert batching.is_enabled(on, 1)
    # Limits: the version's own, else the model's, else the settings'.
    both = fake_version(pk=503, batch_max_rows=100, own={"batch_max_rows": 8})
    assert batching.is_enabled(both, 8) and not batching.is_enabled(both, 9)
    model_wait = serving.plan_for(fake_version(pk=504, batch_max_wait_ms=7))
    assert (model_wait.batch_max_rows, model_wait.batch_max_wait_seconds) == (64, 0.007)
    own_wait = fake_version(pk=505, batch_max_wait_ms=7, own={"batch_max_wait_ms": 0})
    assert serving.plan_for(own_wait).batch_max_wait_seconds == 0.0


def test_gathered_callers_with_plain_columns_get_their_own_rows(house_model, rows, settings):
    """The single-row fast path hands the batcher a dict of one-value arrays per request: the
    batch is built once from them, and each caller still gets exactly its own prediction."""
    settings.BATCH_MAX_ROWS, settings.BATCH_MAX_WAIT_MS = 64, 5
    model = Recording(house_model, delay=0.002)
    version = fake_version(pk=601)
    records = rows.iloc[:THREADS].to_dict(orient="records")

    def caller(index):
        columns = {
            name: np.array([value], dtype=np.float64 if name != "ocean_proximity" else object)
            for name, value in records[index].items()
        }
        return batching.call(version, model, "predict", columns, 1).tolist()

    results = run_threads(caller)
    expected = house_model.predict(rows.iloc[:THREADS]).tolist()
    assert [result[0] for result in results] == expected
    assert max(model.calls) > 1  # gathered into shared calls


def test_a_call_cheaper_than_batch_min_call_ms_is_not_batched(settings):
    settings.BATCH_ENABLED, settings.BATCH_MIN_CALL_MS = True, 0.5
    settings.ONNX_ENABLED = True
    slow = fake_version(pk=701, own={"single_row_latency_ms": 4.0})
    cheap = fake_version(pk=702, own={"single_row_latency_ms": 0.2})
    assert batching.is_enabled(slow, 1) and not batching.is_enabled(cheap, 1)
    # The serving path's latency counts: an ONNX call takes microseconds.
    onnx = {
        "single_row_latency_ms": 4.0,
        "onnx_artifact": "artifacts/exact.onnx",
        "onnx_is_exact": True,
        "onnx_single_row_latency_ms": 0.02,
    }
    assert not batching.is_enabled(fake_version(pk=703, own=onnx), 1)
    settings.ONNX_ENABLED = False  # then scikit-learn serves it, and its call is slow
    assert batching.is_enabled(fake_version(pk=704, own=onnx), 1)
    settings.ONNX_ENABLED = True
    # The version's own switch wins over the rule.
    assert batching.is_enabled(fake_version(pk=705, own=onnx | {"batching_enabled": True}), 1)
