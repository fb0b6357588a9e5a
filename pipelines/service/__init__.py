"""The server command and its clients: ``serve`` (``recsys serve``), ``recommend`` (ask a running
server) and ``health`` (its gRPC health check, the container's HEALTHCHECK). The clients import
neither torch nor the training stack."""

__all__: list[str] = []
