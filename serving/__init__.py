"""The gRPC recommendation service: server, Redis feature store, micro-batched TorchScript runtime.

Modules, one job each: ``config`` (ServeConfig), ``validation`` (request checks), ``features``
(Redis keys, histories, result cache), ``redis_connection`` (URL or embedded Redis), ``runtime``
(the artifact, micro-batching, hot swap), ``engine`` (one answer: cache, model or fallback),
``service`` (the servicer), ``interceptors`` (errors -> status codes), ``server`` (grpc.aio server,
health, reflection, signals), ``client`` (``recsys recommend``), ``bulk`` (``recsys
load-features``), ``protogen`` (``make protos``). Serving reads models only through the
``recsys.export`` artifact format.
"""

__all__: list[str] = []
