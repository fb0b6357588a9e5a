"""Python code generated from ``protos/`` by ``make protos`` (``python -m serving.protogen``).

Do not edit the ``*_pb2*`` files: change the ``.proto`` and regenerate; a test fails when they are
stale.
"""

__all__: list[str] = []
