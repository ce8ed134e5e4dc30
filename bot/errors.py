"""The one error tree of membot.

Three kinds of error, never mixed (see shared/STYLE.md §5)::

    MembotError
    ├── ModelFacingError        returned to the LLM as a failed function result
    │   ├── FunctionArgumentError   bad JSON, unknown function, missing/wrong-typed arguments
    │   ├── CoreBlockLimitError     an edit would push a core block over its limit
    │   └── CoreBlockMatchError     core_memory_replace found no exact match
    ├── UserFacingError         a short reply to the user; the turn ends cleanly
    │   ├── AgentPausedError        the agent is paused by an admin
    │   ├── DocumentError           an attached document cannot be read as text
    │   └── NotAllowedError         an admin command run by someone who is not an admin (there)
    └── OperatorError           raised, logged once with context, the turn is retried or failed
        ├── ConfigError             a missing or invalid setting at start-up
        ├── StoreError              the store is unreachable or refused an operation
        │   ├── SchemaVersionError  the store was written by a newer membot
        │   ├── NotFoundError       an agent (or other record) does not exist
        │   ├── VersionConflictError a compare-and-set write lost a race
        │   └── LeaseLostError      a write under a lease another replica has since taken
        └── LLMError                the LLM endpoint failed
            ├── LLMUnavailableError retries exhausted (429, 5xx, timeouts, connection)
            ├── LLMResponseError    the endpoint answered something unusable
            └── ContextOverflowError the prompt did not fit the model's context window
"""

from __future__ import annotations

__all__ = [
    "AgentPausedError",
    "ConfigError",
    "ContextOverflowError",
    "CoreBlockLimitError",
    "CoreBlockMatchError",
    "DocumentError",
    "FunctionArgumentError",
    "LLMError",
    "LLMResponseError",
    "LLMUnavailableError",
    "LeaseLostError",
    "MembotError",
    "ModelFacingError",
    "NotAllowedError",
    "NotFoundError",
    "OperatorError",
    "SchemaVersionError",
    "StoreError",
    "UserFacingError",
    "VersionConflictError",
]


class MembotError(Exception):
    """Base of every error membot raises on purpose."""


class ModelFacingError(MembotError):
    """Something the LLM did wrong; its text goes back to the LLM as a function result."""


class FunctionArgumentError(ModelFacingError):
    """Raised when a tool call names no known function or its arguments do not validate."""


class CoreBlockLimitError(ModelFacingError):
    """Raised when a core memory edit would exceed the block's character limit."""


class CoreBlockMatchError(ModelFacingError):
    """Raised when `core_memory_replace` cannot find the exact text to replace."""


class UserFacingError(MembotError):
    """Something the user should hear about in one short sentence."""


class AgentPausedError(UserFacingError):
    """Raised when a message reaches an agent an admin has paused."""


class DocumentError(UserFacingError):
    """Raised when an attached document is missing, too big, binary, not UTF-8, or a PDF without readable text."""


class NotAllowedError(UserFacingError):
    """Raised by the admin service when the actor is not an admin, or acts outside the server
    the command was run in; checked in code whatever the platform already checked."""


class OperatorError(MembotError):
    """Something the operator must fix or that a retry may cure; logged, never shown raw to users."""


class ConfigError(OperatorError):
    """Raised at start-up when a setting is missing or invalid; the message names the setting."""


class StoreError(OperatorError):
    """Raised when the memory store is unreachable or refuses an operation."""


class SchemaVersionError(StoreError):
    """Raised when the store's schema is newer than this membot understands; nothing is overwritten."""


class NotFoundError(StoreError):
    """Raised when a record (an agent, a block, a passage) does not exist."""


class VersionConflictError(StoreError):
    """Raised when a compare-and-set write finds a newer version than the one it read."""


class LeaseLostError(StoreError):
    """Raised when a memory write carries a fencing token older than the agent's current one:
    this replica's lease expired and another replica runs the agent now."""


class LLMError(OperatorError):
    """Base of failures talking to the OpenAI-compatible endpoint."""


class LLMUnavailableError(LLMError):
    """Raised when retries on 429, 5xx, timeouts or connection errors are exhausted."""


class LLMResponseError(LLMError):
    """Raised when the endpoint answers with something unusable (4xx other than 429, no choices)."""


class ContextOverflowError(LLMError):
    """Raised when the server says the prompt exceeds the model's context window."""
