"""Generated code of the ``recsys.*`` proto packages."""

__all__: list[str] = []
