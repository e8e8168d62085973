"""Which types an artifact may contain. Shared by the skops loader and the pickle sandbox.

Kept free of Django imports: the pickle sandbox process imports it on its own.
"""

import importlib

# skops trusts builtins, numpy and most scikit-learn types by default; we add every class of
# scikit-learn (e.g. HistGradientBoosting's TreePredictor), nothing else unless configured.
TRUSTED_MODULE_PREFIXES = ("sklearn.",)

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
    """True when a skops artifact may contain the type `name` (as skops spells it)."""
    return name.startswith(TRUSTED_MODULE_PREFIXES) or name in extra


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
