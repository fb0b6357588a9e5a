"""The gRPC recommendation service, laid out by role.

The gRPC layer at the top: ``server`` (grpc.aio server, health, reflection, signals, hot reload),
``service`` (the servicer), ``interceptors`` (domain errors -> status codes), ``errors`` (those
errors), ``validation`` (request checks), ``config`` (``ServeConfig``), ``client`` (the client
behind ``recsys recommend``), ``security`` (TLS, scoped tokens), ``metrics`` (Prometheus),
``logs`` (text or JSON lines), ``protogen`` + ``proto/`` (generated code, ``make protos``);
``monitoring/`` holds the Prometheus and Grafana files docker-compose mounts.
``engine`` composes one answer (cache, stored history, model or popularity fallback) from the two
rooms below it: ``store/`` (the Redis feature store and its connections) and ``model/`` (the
loaded artifact and micro-batched inference). Serving reads models only through the artifact
(``recsys.export``); it never imports training code.
"""

__all__: list[str] = []
