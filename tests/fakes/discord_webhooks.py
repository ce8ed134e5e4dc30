"""The fake Discord's interaction routes: callbacks, follow-ups and the interaction's messages.

POST /interactions/{id}/{token}/callback answers an interaction once (404 10062 Unknown
interaction after the deadline, 400 40060 when already answered) with a type its kind
allows: 4 sends a message, 5 a "thinking" one (LOADING), 6 acknowledges, 7 edits the
component's message, 8 gives autocomplete choices, 9 opens a modal (remembered, so the
test can submit it). With `with_response` (discord.py always asks) the answer describes
the interaction and its message. The interaction's webhook (/webhooks/{app}/{token}) takes
follow-ups once answered (the first after a deferral fills the "thinking" message) and
GET/PATCH/DELETE of "@original" and of follow-ups. Ephemeral messages (flag 64) are kept
apart: never in the channel's history, never sent over the gateway.
"""

from __future__ import annotations

from tests.fakes.discord_gateway import Gateway
from tests.fakes.discord_http import Call, Endpoint, uploads
from tests.fakes.discord_interactions import FakeInteraction, Interactions
from tests.fakes.discord_models import FakeChannel
from tests.fakes.discord_requests import Reply
from tests.fakes.discord_wire import (
    JSON,
    CallbackType,
    DiscordHTTPError,
    InteractionType,
    MessageFlag,
    form_error,
)
from tests.fakes.discord_world import World, check_message_body

__all__ = ["InteractionAPI"]

_ALLOWED_CALLBACKS = {
    InteractionType.APPLICATION_COMMAND: {4, 5, 9},
    InteractionType.MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
    InteractionType.MODAL_SUBMIT: {4, 5, 6, 7},
    InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE: {8},
}
_NOT_LOADING = ~MessageFlag.LOADING & ~MessageFlag.EPHEMERAL


class InteractionAPI:
    """Routes authenticated by the interaction's token, not the bot's."""

    def __init__(self, world: World, *, interactions: Interactions, gateway: Gateway) -> None:
        self._world = world
        self._interactions = interactions
        self._gateway = gateway

    def endpoints(self) -> list[Endpoint]:
        message = "/webhooks/{application_id}/{token}/messages/{message_id}"
        return [
            Endpoint("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, needs_auth=False),
            Endpoint("POST", "/webhooks/{application_id}/{token}", self._followup, needs_auth=False),
            Endpoint("GET", message, self._get, needs_auth=False),
            Endpoint("PATCH", message, self._edit, needs_auth=False),
            Endpoint("DELETE", message, self._delete, needs_auth=False),
        ]

    async def _callback(self, call: Call) -> Reply:
        interaction = self._interactions.find(call.id("interaction_id"), call.params["token"])
        kind, data = call.body.get("type"), call.body.get("data") or {}
        if kind not in _ALLOWED_CALLBACKS[interaction.type]:
            choices = sorted(_ALLOWED_CALLBACKS[interaction.type])
            raise DiscordHTTPError(400, form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {choices}."))
        world = self._world
        channel = world.channels[interaction.channel_id]
        created = edited = None
        with world.lock:
            match kind:
                case CallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
                    created = self._create(channel, interaction, call.with_body(data), self._metadata(interaction))
                case CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
                    flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
                    metadata = self._metadata(interaction)
                    app = world.application_id
                    created = world.create_message(
                        channel, world.bot, flags=flags, webhook_id=app, interaction_metadata=metadata
                    )
                case CallbackType.UPDATE_MESSAGE if interaction.message_id is not None:
                    edited = world.edit_message(interaction.message_id, data, uploads(call))
                case CallbackType.UPDATE_MESSAGE:
                    problem = form_error("type", "INTERACTION_NO_MESSAGE", "This interaction has no message to update.")
                    raise DiscordHTTPError(400, problem)
                case CallbackType.MODAL:
                    if not (data.get("custom_id") and data.get("title") and data.get("components")):
                        problem = form_error(
                            "data", "BASE_TYPE_REQUIRED", "A modal needs custom_id, title, components."
                        )
                        raise DiscordHTTPError(400, problem)
                    interaction.modal = data
            interaction.response_type = int(kind)
            if created is not None:
                interaction.original_message_id = int(created["id"])
            elif kind in (CallbackType.DEFERRED_UPDATE_MESSAGE, CallbackType.UPDATE_MESSAGE):
                # A component's interaction responds on the component's message: that is its "@original".
                interaction.original_message_id = interaction.message_id
        if created is not None:
            await self._gateway.echo("MESSAGE_CREATE", created)
        if edited is not None:
            await self._gateway.echo("MESSAGE_UPDATE", edited)
        if call.query.get("with_response", "").lower() not in ("1", "true"):
            return Reply(status=204)
        return Reply(status=200, body=_callback_answer(interaction, int(kind), created or edited))

    def _create(self, channel: FakeChannel, interaction: FakeInteraction, call: Call, metadata: JSON) -> JSON:
        world = self._world
        return world.create_from_body(
            channel, world.bot, call.body, uploads(call), webhook_id=world.application_id, interaction_metadata=metadata
        )

    def _metadata(self, interaction: FakeInteraction) -> JSON:
        """The `interaction_metadata` of messages answering it."""
        payload = interaction.payload
        user = payload["member"]["user"] if "member" in payload else payload["user"]
        metadata: JSON = {
            "id": str(interaction.id),
            "type": int(interaction.type),
            "user": user,
            "authorizing_integration_owners": payload["authorizing_integration_owners"],
        }
        if interaction.type is InteractionType.APPLICATION_COMMAND:
            metadata["name"] = payload["data"]["name"]
        if interaction.message_id is not None:
            metadata["interacted_message_id"] = str(interaction.message_id)
        return metadata

    async def _followup(self, call: Call) -> Reply:
        interaction = self._interactions.by_token(call.id("application_id"), call.params["token"])
        world = self._world
        channel = world.channels[interaction.channel_id]
        with world.lock:
            original = world.messages.get(interaction.original_message_id or 0)
            if original is not None and original["flags"] & MessageFlag.LOADING:
                # The first follow-up after a deferral fills the "thinking" message.
                check_message_body(call.body, has_files=bool(call.files))
                changes = call.body | {"flags": int(call.body.get("flags") or 0) & _NOT_LOADING}
                message = world.edit_message(int(original["id"]), changes, uploads(call))
                event = "MESSAGE_UPDATE"
            else:
                original_id = str(interaction.original_message_id)
                metadata = self._metadata(interaction) | {"original_response_message_id": original_id}
                message = self._create(channel, interaction, call, metadata)
                interaction.followup_ids.append(int(message["id"]))
                event = "MESSAGE_CREATE"
        await self._gateway.echo(event, message)
        is_waiting = call.query.get("wait", "").lower() in ("1", "true")
        return Reply(status=200, body=message) if is_waiting else Reply(status=204)

    def _target(self, call: Call) -> int:
        interaction = self._interactions.by_token(call.id("application_id"), call.params["token"])
        return self._interactions.webhook_message(interaction, call.params["message_id"])

    async def _get(self, call: Call) -> Reply:
        return Reply(status=200, body=self._world.messages[self._target(call)])

    async def _edit(self, call: Call) -> Reply:
        message_id = self._target(call)
        changes = call.body
        if self._world.messages[message_id]["flags"] & MessageFlag.LOADING:
            changes = changes | {"flags": int(changes.get("flags") or 0) & _NOT_LOADING}
        edited = self._world.edit_message(message_id, changes, uploads(call))
        await self._gateway.echo("MESSAGE_UPDATE", edited)
        return Reply(status=200, body=edited)

    async def _delete(self, call: Call) -> Reply:
        await self._gateway.echo("MESSAGE_DELETE", self._world.delete_message(self._target(call)))
        return Reply(status=204)


def _callback_answer(interaction: FakeInteraction, kind: int, message: JSON | None) -> JSON:
    """The `with_response` body: the interaction, and the message the callback made or changed."""
    answer: JSON = {
        "interaction": {
            "id": str(interaction.id),
            "type": int(interaction.type),
            "response_message_loading": kind == CallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
            "response_message_ephemeral": bool(message and message["flags"] & MessageFlag.EPHEMERAL),
        }
    }
    if message is not None:
        answer["interaction"]["response_message_id"] = message["id"]
        answer["resource"] = {"type": kind, "message": message}
    return answer
