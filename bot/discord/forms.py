"""The admin commands' forms: `/memory edit`'s modal, and the confirmation buttons of destructive commands.

`/memory edit`'s form is a Discord modal bound to the interaction that opened it.

discord.py finds the modal a submission belongs to by its custom_id alone, so a fixed custom_id
would hand every submission to whichever form was opened last, in any server. Each form gets its
own custom_id (``membot:edit-block:<opening interaction id>``) and carries where, by whom and for
which agent it was opened (`FormOrigin`); the submit handler (`MemoryCommands.submit_form`)
checks all of that again, and the permission, before anything is written.

A submission this process does not know (the form timed out, or the bot restarted since it was
opened) would be dropped by discord.py without a word; `OpenForms.is_stale` lets the adapter
answer it instead.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot.discord.answers import answer_error, reply

__all__ = ["FORM_PREFIX", "FORM_TIMEOUT_S", "ConfirmView", "EditBlockForm", "FormOrigin", "OpenForms"]

FORM_PREFIX = "membot:edit-block:"
#: How long an opened form can be submitted (discord.py forgets it then).
FORM_TIMEOUT_S = 15 * 60.0
_TEXT_INPUT = "membot:block-text"
#: How long confirmation buttons stay clickable.
_CONFIRM_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FormOrigin:
    """Where, by whom and for which agent a form was opened."""

    custom_id: str
    guild_id: int
    channel_id: int
    #: The member who opened it: the only one who may submit it.
    member_id: int
    #: Whose agent (the `user:` option, else the member's own place in the channel).
    target_user_id: int
    agent_id: str
    label: str


class EditBlockForm(discord.ui.Modal):
    """The block's text, prefilled; submitting hands the form to `submit` (its errors are answered)."""

    def __init__(
        self,
        *,
        origin: FormOrigin,
        value: str,
        limit: int,
        submit: Callable[[EditBlockForm, discord.Interaction[Any]], Awaitable[None]],
    ) -> None:
        super().__init__(title=f"Core memory: {origin.label}"[:45], custom_id=origin.custom_id, timeout=FORM_TIMEOUT_S)
        self.origin = origin
        self._submit = submit
        self.text: discord.ui.TextInput[EditBlockForm] = discord.ui.TextInput(
            label=origin.label[:45],
            style=discord.TextStyle.paragraph,
            custom_id=_TEXT_INPUT,
            default=value[:limit],
            max_length=limit,
            required=False,
        )
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self._submit(self, interaction)

    # discord.py's Modal.on_error itself differs from BaseView.on_error (no `item`).
    async def on_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:  # type: ignore[override]
        await answer_error(interaction, error)


class ConfirmView(discord.ui.View):
    """Confirm / Cancel for a destructive command; only the member who ran it may click, and
    `action` gets the click, so the permission is checked again from what it carries."""

    def __init__(self, *, owner_id: int, action: Callable[[discord.Interaction[Any]], Awaitable[str]]) -> None:
        super().__init__(timeout=_CONFIRM_TIMEOUT_S)
        self._owner_id = owner_id
        self._action = action

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id == self._owner_id:
            return True
        await reply(interaction, "Only the member who ran the command can confirm it.")
        return False

    # No fixed custom_ids: each view gets fresh ones, so a click can only reach the view it was shown with.
    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction[Any], button: discord.ui.Button[ConfirmView]) -> None:
        self.stop()
        await interaction.response.defer(ephemeral=True, thinking=False)
        text = await self._action(interaction)
        await interaction.edit_original_response(content=text, view=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction[Any], button: discord.ui.Button[ConfirmView]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Cancelled; nothing changed.", view=None)

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await answer_error(interaction, error)


class OpenForms:
    """The custom_ids of the forms this process opened and can still take, until they time out."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def add(self, custom_id: str) -> None:
        now = self._clock()
        # Forget the timed-out ones, so the map holds at most a timeout's worth of forms.
        self._until = {key: until for key, until in self._until.items() if until > now}
        self._until[custom_id] = now + FORM_TIMEOUT_S

    def is_stale(self, interaction: discord.Interaction[Any]) -> bool:
        """A submission of one of our forms that no open form will take (so it must be answered here).

        Kept until the timeout even once submitted: whether a form was taken must not depend on
        which of discord.py's tasks for the same submission runs first."""
        if interaction.type is not discord.InteractionType.modal_submit or not isinstance(interaction.data, dict):
            return False
        custom_id = str(interaction.data.get("custom_id") or "")
        if not custom_id.startswith(FORM_PREFIX):
            return False
        until = self._until.get(custom_id)
        return until is None or until <= self._clock()
