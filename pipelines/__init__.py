"""The ``recsys`` command and what it runs: thin entries that read typed settings and call the
library or the service.

``cli`` (the lazy command group), ``options`` (every command's flags built from its typed
config), ``console`` (shared terminal output), ``configs/`` (training YAML files), ``jobs/``
(batch jobs: synth, prepare, train, evaluate, export, load-features, demo, and the container's
job script) and ``service/`` (the server command and its clients: serve, recommend, health).
"""

__all__: list[str] = []
