"""Generated code of ``recsys.v1`` (``protos/recsys/v1/recommender.proto``)."""

__all__: list[str] = []
