"""Which types an artifact may contain. Shared by the skops loader and the sandbox processes.

Kept free of Django imports: the sandbox processes import it on their own.

A skops artifact may name, besides the types skops itself trusts (builtins, numpy arrays and
ufuncs, scipy sparse matrices and ufuncs, scikit-learn's estimators):
- a class in TRUSTED_CLASSES: scikit-learn's estimators and the internal types a fitted one
  holds, numpy's scalar types. Building one (skops calls `__new__` and sets its state) runs no
  code that reads or writes anything, and neither does calling one (a FunctionTransformer may
  hold a class as its func);
- a callable in TRUSTED_FUNCTIONS: a short reviewed list of pure functions (what a
  FunctionTransformer, a ColumnTransformer selector or SelectKBest's `score_func` calls);
- a dotted name the operator lists in MODELPORT_TRUSTED_TYPES.
skops' `get_untrusted_types` returns plain dotted names for all of these ("module.function",
"module.Class.method" for a bound method, "builtins.method_descriptor" for an unbound C method),
never saying which is a function; so both lists name exact objects, no prefixes: a file-writing
function such as `sklearn.datasets.dump_svmlight_file` or `numpy.save` is in neither.
"""

import importlib
import inspect
import pickle
import warnings
from operator import itemgetter

import numpy as np
import scipy.interpolate
import sklearn.calibration
import sklearn.feature_selection
import sklearn.gaussian_process.kernels
import sklearn.metrics
import sklearn.metrics._dist_metrics
import sklearn.metrics._scorer
import sklearn.model_selection
import sklearn.neural_network._stochastic_optimizers
import sklearn.tree._tree
import sklearn.utils
from scipy._lib.array_api_compat.numpy import _aliases as scipy_numpy_aliases
from sklearn._loss import link, loss
from sklearn.base import BaseEstimator
from sklearn.compose import make_column_selector
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.neighbors import BallTree, KDTree
from sklearn.utils import discovery
from sklearn.utils._bunch import Bunch

from ..errors import ArtifactInvalid, UntrustedType


def type_name(obj) -> str:
    """The dotted name skops records for a class or function (it uses pickle's lookup too)."""
    return f"{pickle.whichmodule(obj, obj.__name__)}.{obj.__name__}"


def _classes_in(
    module, base: type | tuple[type, ...], *, exclude: tuple[str, ...] = ()
) -> list[type]:
    """The subclasses of `base` defined as attributes of `module`, minus `exclude` names."""
    found = [getattr(module, name) for name in dir(module) if name not in exclude]
    return [obj for obj in found if isinstance(obj, type) and issubclass(obj, base)]


# The public modules that scikit-learn's estimators are listed from: `all_estimators()` walks
# every module of scikit-learn for them (its tests and externals too, and with them dask and
# pytest), some 20 MiB more in every process that loads a model. `public_estimators()` looks in
# these alone, and tests/unit/test_safe_loading.py checks it finds what `all_estimators()` finds.
ESTIMATOR_MODULES = (
    "sklearn.calibration",
    "sklearn.cluster",
    "sklearn.compose",
    "sklearn.covariance",
    "sklearn.cross_decomposition",
    "sklearn.decomposition",
    "sklearn.discriminant_analysis",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.feature_extraction",
    "sklearn.feature_extraction.image",
    "sklearn.feature_extraction.text",
    "sklearn.feature_selection",
    "sklearn.gaussian_process",
    "sklearn.impute",
    "sklearn.kernel_approximation",
    "sklearn.kernel_ridge",
    "sklearn.linear_model",
    "sklearn.manifold",
    "sklearn.mixture",
    "sklearn.model_selection",
    "sklearn.multiclass",
    "sklearn.multioutput",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.random_projection",
    "sklearn.semi_supervised",
    "sklearn.svm",
    "sklearn.tree",
)


def public_estimators() -> list[tuple[str, type]]:
    """What `all_estimators()` returns, found as it finds them (the public classes derived
    from BaseEstimator, not abstract) in ESTIMATOR_MODULES only."""
    found = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # as all_estimators: deprecated modules
        for module in map(importlib.import_module, ESTIMATOR_MODULES):
            found.update(inspect.getmembers(module, inspect.isclass))
    estimators = [
        (name, cls)
        for name, cls in found
        if not name.startswith("_")
        and issubclass(cls, BaseEstimator)
        and name != "BaseEstimator"
        and not getattr(cls, "__abstractmethods__", None)
    ]
    return sorted(estimators, key=itemgetter(0))


_PUBLIC_ESTIMATORS = public_estimators()

# skops lists scikit-learn's estimators (the ones it trusts itself) when skops.io is first
# imported, by calling all_estimators(): it is handed the same list, found as above.
sklearn.utils.all_estimators = lambda: list(_PUBLIC_ESTIMATORS)
try:
    import skops.io
finally:
    sklearn.utils.all_estimators = discovery.all_estimators

# The public estimators and transformers. Reviewed for scikit-learn 1.9: `all_estimators()`
# lists only estimator classes (no function, no dataset helper) and none of them writes a file;
# what a meta-estimator calls (FunctionTransformer's func, a score_func) is checked on its own.
_ESTIMATORS = [cls for _, cls in _PUBLIC_ESTIMATORS if type_name(cls).startswith("sklearn.")]
# Internal types of fitted estimators, each reviewed: state holders and pure evaluators.
_INTERNALS = [
    sklearn.tree._tree.Tree,  # every tree and forest
    TreePredictor,  # HistGradientBoosting
    _BinMapper,
    *_classes_in(loss, loss.BaseLoss),  # gradient boosting losses
    *_classes_in(link, link.BaseLink),
    link.Interval,
    KDTree,  # nearest neighbors
    BallTree,
    # Distance metrics of the neighbor trees; PyFuncDistance calls a Python function: left out.
    *_classes_in(
        sklearn.metrics._dist_metrics,
        (
            sklearn.metrics._dist_metrics.DistanceMetric32,
            sklearn.metrics._dist_metrics.DistanceMetric64,
        ),
        exclude=("PyFuncDistance32", "PyFuncDistance64"),
    ),
    *_classes_in(sklearn.gaussian_process.kernels, sklearn.gaussian_process.kernels.Kernel),
    sklearn.neural_network._stochastic_optimizers.AdamOptimizer,  # MLP
    sklearn.neural_network._stochastic_optimizers.SGDOptimizer,
    sklearn.calibration._CalibratedClassifier,  # CalibratedClassifierCV
    sklearn.calibration._SigmoidCalibration,
    sklearn.metrics._scorer._Scorer,  # GridSearchCV's scorer_ (its metric is checked apart)
    sklearn.metrics._scorer._PassthroughScorer,
    sklearn.model_selection.KFold,  # GridSearchCV's cv
    sklearn.model_selection.StratifiedKFold,
    make_column_selector,  # ColumnTransformer column selection by dtype or name pattern
    scipy.interpolate.BSpline,  # SplineTransformer
    Bunch,  # StackingClassifier
    np.dtype,
    *_classes_in(np, np.generic),  # numpy scalar types (a selector's dtype_include=np.number)
]
TRUSTED_CLASSES = frozenset(type_name(cls) for cls in [*_ESTIMATORS, *_INTERNALS])

# Pure functions: they compute from their arguments and return a value; nothing is read,
# written or called back. skops already trusts every numpy and scipy ufunc (np.log1p, np.exp,
# np.sqrt, ...), which are pure too; these are the plain Python functions models commonly hold.
_FUNCTIONS = [
    np.clip,  # FunctionTransformer funcs
    np.nan_to_num,
    np.round,
    np.asarray,
    scipy_numpy_aliases.asarray,  # held by SplineTransformer's BSpline
    sklearn.feature_selection.f_regression,  # SelectKBest & co. score functions
    sklearn.feature_selection.f_classif,
    sklearn.feature_selection.chi2,
    sklearn.feature_selection.r_regression,
    sklearn.feature_selection.mutual_info_regression,
    sklearn.feature_selection.mutual_info_classif,
    sklearn.metrics.r2_score,  # metrics behind a search's scorer_
    sklearn.metrics.mean_absolute_error,
    sklearn.metrics.mean_squared_error,
    sklearn.metrics.accuracy_score,
    sklearn.metrics.f1_score,
    sklearn.metrics.roc_auc_score,
    sklearn.metrics.log_loss,
]
TRUSTED_FUNCTIONS = frozenset(type_name(function) for function in _FUNCTIONS)

# What a pickle may name: classes of these packages (rebuilt through __new__/__setstate__ or
# their own constructors), never their functions, which pickle's REDUCE would call with
# arbitrary arguments (numpy.save, for one, writes a file).
PICKLE_CLASS_PREFIXES = ("sklearn.", "numpy.", "scipy.")
PICKLE_REFUSED_CLASSES = {"numpy.memmap", "numpy.core.memmap.memmap", "numpy._core.memmap.memmap"}
PICKLE_FUNCTIONS = {
    "copyreg._reconstructor",
    "copyreg.__newobj__",
    "_codecs.encode",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
}
# Cython's generated `__pyx_unpickle_<Class>` helpers rebuild an extension type from its state
# (HistGradientBoosting's SeedSequence, scikit-learn's loss classes); they call nothing else.
PICKLE_CYTHON_PREFIXES = ("sklearn.", "numpy.")
CYTHON_UNPICKLE = "__pyx_unpickle_"
# Classes a pickle may call with arguments (REDUCE): their constructors only build a value.
# Any other allowed class may only be created empty (NEWOBJ) and given its state: called with
# arguments, a harmless-looking class can still act (scipy.io.netcdf_file(path, "w") writes).
PICKLE_CALLABLE_CLASSES = {
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "builtins.complex",
    "builtins.bytearray",
    "builtins.range",
    "collections.OrderedDict",
}
PICKLE_BUILTIN_CLASSES = {
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "builtins.complex",
    "builtins.bytearray",
    "builtins.range",
    "builtins.object",
    "collections.OrderedDict",
    "collections.defaultdict",
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "joblib.numpy_pickle_compat.NDArrayWrapper",
}


def is_trusted_type(name: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    """True when a skops artifact may contain `name`, a type skops does not trust itself."""
    return name in TRUSTED_CLASSES or name in TRUSTED_FUNCTIONS or name in extra


def check_skops(data: bytes, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The names to pass to `skops.io.loads(trusted=...)`; raise UntrustedType naming every
    refused one, ArtifactInvalid for bytes that are not a skops file. Runs none of their code."""
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a zip that is not skops fails in many ways
        raise ArtifactInvalid(f"Not a readable skops file: {type(exc).__name__}: {exc}") from None
    refused = [name for name in untrusted if not is_trusted_type(name, extra)]
    if refused:
        raise UntrustedType(
            f"The artifact contains types that are not trusted: {', '.join(refused)}. "
            "Add them to MODELPORT_TRUSTED_TYPES only if you trust their code.",
            errors=[
                {"field": "artifact", "code": "untrusted_type", "message": name} for name in refused
            ],
        )
    return untrusted


def load_skops(data: bytes, extra: list[str] | tuple[str, ...] = ()):
    """Load skops bytes after `check_skops`; ArtifactInvalid when they do not load."""
    trusted = check_skops(data, extra)
    try:
        return skops.io.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactInvalid(
            f"The skops file failed to load: {type(exc).__name__}: {exc}"
        ) from None


def resolve_pickle_global(module: str, name: str, extra: list[str] | tuple[str, ...] = ()):
    """Import `module.name` for an unpickler, or raise ValueError when it is not allowed."""
    full_name = f"{module}.{name}"
    if full_name in PICKLE_FUNCTIONS or full_name in PICKLE_BUILTIN_CLASSES or full_name in extra:
        return getattr(importlib.import_module(module), name)
    if name.startswith(CYTHON_UNPICKLE) and module.startswith(PICKLE_CYTHON_PREFIXES):
        return getattr(importlib.import_module(module), name)
    if full_name.startswith(PICKLE_CLASS_PREFIXES) and full_name not in PICKLE_REFUSED_CLASSES:
        obj = getattr(importlib.import_module(module), name)
        if isinstance(obj, type):
            return obj
    raise ValueError(f"refused type {full_name}")


def check_pickle_call(func, args) -> None:
    """Raise ValueError unless a pickle may call `func(*args)` (its REDUCE opcode).

    Functions reach the stack only through `resolve_pickle_global`, so they are allowed;
    classes called with arguments must be in PICKLE_CALLABLE_CLASSES.
    """
    if isinstance(func, type) and args:
        full_name = f"{func.__module__}.{func.__qualname__}"
        if full_name not in PICKLE_CALLABLE_CLASSES:
            raise ValueError(f"refused type {full_name} (called with arguments)")
