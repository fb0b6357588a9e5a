"""Batch jobs, one module each: ``synth``, ``prepare``, ``train``, ``evaluate``, ``export``,
``load_features``, ``demo`` (all of them end to end, then the server), and ``docker_job.sh``
(the one-shot job of docker-compose)."""

__all__: list[str] = []
