"""The one pipeline engine: steps, keys, plans, the runner, executors, the store and typed records.

* :mod:`~edgeslim.engine.steps` - the step model: (typed config, input artifact) -> (artifact, [Measurement]);
* :mod:`~edgeslim.engine.handlers` - one handler per step type (a table keyed by type);
* :mod:`~edgeslim.engine.keys` - one key scheme: hash of the step's config, data and input's key;
* :mod:`~edgeslim.engine.plan` - recipes -> nodes, shared prefixes merged;
* :mod:`~edgeslim.engine.runner` - schedule ready nodes on an executor (inline, local processes, Ray);
* :mod:`~edgeslim.engine.store` / :mod:`~edgeslim.engine.records` - SQLite records and typed results.

Submodules are imported where used (``edgeslim.engine.store`` loads without torch).
"""
