"""What runs in the jailed child processes, and the allowlist they share with web processes.

`jail` confines a child and runs a module in it: `check_child` (check a new upload) or
`pickle_child` (turn a pickle into skops); `trust` is the allowlist both they and the web
processes load artifacts under. The parent side (`artifacts`) starts them.

No module of this package imports Django, and this file imports nothing: a child runs as
`python -m modelregistry.sandbox.jail ...`, which imports this package before it confines itself,
and it has no Django settings.
"""
