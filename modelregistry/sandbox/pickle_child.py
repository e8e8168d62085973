"""Open a joblib/pickle artifact in a throwaway process and convert it to skops.

Run as `python -m modelregistry.sandbox.jail ... modelregistry.sandbox.pickle_child IN OUT
TRUSTED` by `artifacts.convert_pickle`, confined to the directory of IN and OUT (see `jail`): web
processes never unpickle. Every global the pickle names goes through `trust.resolve_pickle_global`,
so a pickle that calls os.system, open or numpy.save is refused before anything runs.
TRUSTED is MODELPORT_TRUSTED_TYPES, comma-separated. Writes `outcome.json` beside OUT:
{"ok": true} or {"ok": false, "error": "..."}.
"""

import json
import pickle
import sys
from pathlib import Path

import joblib.numpy_pickle
import skops.io

from modelregistry.sandbox.trust import check_pickle_call, is_trusted_type, resolve_pickle_global

EXTRA_TRUSTED: tuple[str, ...] = ()  # set by main() from the command line


class RestrictedUnpickler(joblib.numpy_pickle.NumpyUnpickler):
    """joblib's (pure Python) unpickler with an allowlist in find_class and on every call."""

    dispatch = joblib.numpy_pickle.NumpyUnpickler.dispatch.copy()

    def find_class(self, module, name):
        try:
            return resolve_pickle_global(module, name, EXTRA_TRUSTED)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"refused type {module}.{name}: {exc}") from None

    def load_reduce(self):
        check_pickle_call(self.stack[-2], self.stack[-1])
        super().load_reduce()

    dispatch[pickle.REDUCE[0]] = load_reduce


def convert(source: str, target: str) -> None:
    """Unpickle `source` under the allowlist and write it to `target` in skops format."""
    # joblib.load looks the class up in its module at call time; this process exists for it.
    joblib.numpy_pickle.NumpyUnpickler = RestrictedUnpickler
    estimator = joblib.load(source)
    data = skops.io.dumps(estimator)
    refused = [
        t for t in skops.io.get_untrusted_types(data=data) if not is_trusted_type(t, EXTRA_TRUSTED)
    ]
    if refused:
        raise ValueError(f"refused type {', '.join(refused)}")
    with open(target, "wb") as handle:
        handle.write(data)


def main() -> int:
    global EXTRA_TRUSTED
    source, target, trusted = sys.argv[1], sys.argv[2], sys.argv[3]
    EXTRA_TRUSTED = tuple(name.strip() for name in trusted.split(",") if name.strip())
    outcome: dict[str, object]
    try:
        convert(source, target)
        outcome = {"ok": True}
    except Exception as exc:  # report any failure as data; the parent decides
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(target).with_name("outcome.json").write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
