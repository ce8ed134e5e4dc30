"""Ephemeral answers to Discord interactions, and the admin service's errors as one sentence each."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot.errors import ConfigError, CoreBlockLimitError, NotFoundError, UserFacingError, VersionConflictError

__all__ = ["answer_error", "reply"]

_log = logging.getLogger(__name__)


async def answer_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Map the service's errors to a sentence; anything else is logged and answered generically."""
    match error:
        case UserFacingError() | CoreBlockLimitError() | ConfigError():
            text = str(error)
        case NotFoundError():
            text = f"Not found: {error}"
        case VersionConflictError():
            text = "Someone changed that at the same moment; run the command again."
        case _:
            _log.error("Discord command failed", exc_info=error)
            text = "That failed on my side; the operator can find the details in the log."
    try:
        await reply(interaction, text)
    except discord.HTTPException as exc:  # the interaction expired or Discord is down: nothing to tell
        _log.warning("could not answer a Discord interaction with its error (%s): %s", exc, text)


async def reply(
    interaction: discord.Interaction[Any],
    text: str,
    *,
    files: Sequence[discord.File] = (),
    view: discord.ui.View | None = None,
) -> None:
    """An ephemeral answer, as the first response or as a follow-up once deferred."""
    extra: dict[str, Any] = {"files": list(files)} if files else {}
    if view is not None:
        extra["view"] = view
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **extra)
    else:
        await interaction.response.send_message(text, ephemeral=True, **extra)
