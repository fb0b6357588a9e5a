"""Domain errors: every failure a user can cause is one of these, with a message naming the problem.

Entry points (the ``recsys`` command, the gRPC server) turn them into a clear message and a non-zero
exit or a proper status code, never a traceback.
"""


class RecsysError(Exception):
    """Base class of every error the project raises on purpose."""


class DataError(RecsysError):
    """Input data cannot be read, mapped, cleaned or split as asked."""


class ConfigError(RecsysError):
    """A configuration value or flag is invalid."""


class OutputExistsError(RecsysError):
    """The output path exists and overwriting was not asked for."""


class ArtifactError(RecsysError):
    """An exported model artifact is missing a file, fails its checksums, has an unknown format
    version, or cannot be written or verified; the message names the file and the problem."""
