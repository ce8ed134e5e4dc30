"""The seam for embedding models: the `Embedder` protocol.

`bot.memory.openai_embeddings.OpenAIEmbedder` implements it over any OpenAI-compatible
`/v1/embeddings` endpoint; it lives apart so nothing that only needs the protocol pays
for importing the openai SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Embedder"]


class Embedder(Protocol):
    """Something that maps texts to fixed-size vectors, one per text, in order."""

    @property
    def model_name(self) -> str:
        """The embedding model id; stores record it so vectors from different models never mix."""
        ...

    @property
    def dimensions(self) -> int | None:
        """The vector size, or None until the first call has revealed it."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in input order.

        Raises `LLMUnavailableError` when retries run out and `LLMResponseError` when the
        endpoint rejects the input or answers with the wrong number or size of vectors.
        """
        ...
