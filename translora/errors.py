"""The project's own exception types.

A `UserError` is something the user can fix (config, inputs, data); its message says what to do, the CLI prints it
without a traceback, and Prefect tasks never retry it. A `TransientError` (out of memory, a generation backend that
died) is worth retrying.
"""


class TransloraError(Exception):
    """Base of every error translora raises on purpose."""


class UserError(TransloraError):
    """A problem in the user's config, models or data; retrying will not help."""


class ConfigError(UserError):
    pass


class ModelNotFoundError(UserError):
    pass


class AdapterMismatchError(UserError):
    pass


class DataError(UserError):
    pass


class FilterExhaustedError(UserError):
    """The discriminator kept too few synthetic samples within the generation budget."""


class ArtifactError(UserError):
    """A run-directory artifact is missing or does not match its manifest."""


class SignatureError(UserError):
    """A signed file is unsigned, tampered with, or signed by a key the operator does not trust."""


class TransientError(TransloraError):
    """A failure worth retrying: out of memory, a generation backend error."""


class GenerationBackendError(TransientError):
    pass


def is_transient(exc: BaseException) -> bool:
    """Whether a failed task attempt should be retried."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, UserError):
        return False
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text
