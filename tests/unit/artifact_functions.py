"""Functions that test artifacts hold, in a module without Django imports: the sandbox process
that checks an upload imports a trusted function's module, and it has no Django settings."""


def double_values(values):
    """A module-level function: skops and pickle name it tests.unit.artifact_functions...."""
    return values * 2
