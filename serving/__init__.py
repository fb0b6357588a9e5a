"""The gRPC recommendation service (coming): server, Redis feature cache, TorchScript runtime."""

__all__: list[str] = []
