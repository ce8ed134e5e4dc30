"""Interactions in the fake Discord: building INTERACTION_CREATE and tracking each one's answers.

`Interactions` builds INTERACTION_CREATE payloads the way Discord would send them:
a slash command only if it was registered (options typed from its registration, users,
channels and roles `resolved`), a component only if it is on the message, a modal submit
only for a modal the bot opened (answered in the modal's own layout). It then plays the
interaction's lifecycle: one callback within the deadline, follow-ups after it, the first
follow-up after a deferral replacing the "thinking" message.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from tests.fakes.discord_commands import CONTAINER_OPTIONS, CommandRegistry
from tests.fakes.discord_models import FakeAttachment, FakeChannel, FakeRole, FakeUser
from tests.fakes.discord_wire import (
    JSON,
    DiscordHTTPError,
    ErrorCode,
    InteractionType,
    OptionType,
)
from tests.fakes.discord_world import World

__all__ = ["FakeInteraction", "Interactions", "OptionValue"]

OptionValue = str | int | float | bool | FakeUser | FakeChannel | FakeRole | FakeAttachment


@dataclass(slots=True, kw_only=True, eq=False)
class FakeInteraction:
    """One interaction the fake sent, and what the bot has done with it so far."""

    id: int
    token: str
    type: InteractionType
    channel_id: int
    guild_id: int | None
    user_id: int
    payload: JSON
    created: float = field(default_factory=time.monotonic)
    response_type: int | None = None
    original_message_id: int | None = None
    message_id: int | None = None  # the message a component sits on
    followup_ids: list[int] = field(default_factory=list)
    modal: JSON | None = None


class Interactions:
    """Builds interactions and tracks their responses."""

    def __init__(self, world: World, commands: CommandRegistry, *, deadline: float | None) -> None:
        self._world = world
        self._commands = commands
        self.deadline = deadline
        self._by_id: dict[int, FakeInteraction] = {}

    # -- building ------------------------------------------------------------------------
    def command(
        self, channel: FakeChannel, user: FakeUser, name: str, options: Mapping[str, OptionValue]
    ) -> FakeInteraction:
        """A slash command: `name` may name a subcommand ("memory show")."""
        root, *path = name.split()
        command = self._commands.find(root, channel.guild_id)
        if command is None:
            raise LookupError(f"no slash command {root!r} is registered for this channel: sync the command tree first")
        resolved: JSON = {}
        built = self._options(command["options"], path, options, channel, resolved)
        data: JSON = {"id": command["id"], "name": root, "type": 1, "options": built}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return self._new(InteractionType.APPLICATION_COMMAND, data, channel, user)

    def component(self, message: JSON, user: FakeUser, custom_id: str, values: Sequence[str] | None) -> FakeInteraction:
        """A click (or a select) on a component of a stored message."""
        with self._world.lock:
            stored = self._world.messages.get(int(message["id"]))
            if stored is None:
                raise LookupError(f"message {message['id']} does not exist (deleted?)")
            found = next((c for c in _walk(stored["components"]) if c.get("custom_id") == custom_id), None)
            if found is None:
                raise LookupError(f"message {message['id']} has no component with custom_id {custom_id!r}")
            channel = self._world.channels[int(stored["channel_id"])]
        data: JSON = {"custom_id": custom_id, "component_type": found["type"]}
        if values is not None:
            data["values"] = list(values)
        interaction = self._new(InteractionType.MESSAGE_COMPONENT, data, channel, user, message=stored)
        interaction.message_id = int(stored["id"])
        return interaction

    def modal_submit(
        self,
        custom_id: str | None,
        values: Mapping[str, str | Sequence[str]],
        user: FakeUser | None,
        *,
        opened: FakeInteraction | None = None,
    ) -> FakeInteraction:
        """Submitting a modal the bot opened: the one it opened in answer to `opened`, else the last
        one with `custom_id`; by `user`, else the user it was opened for. The submission carries
        the modal's custom_id and comes from the channel (and guild) the modal was opened in, as
        Discord's would: two forms open at once are two different submissions."""
        with self._world.lock:
            if opened is not None:
                if opened.modal is None:
                    raise LookupError(f"the bot answered interaction {opened.id} without a modal")
                origin = opened
            else:
                found = [
                    i for i in self._by_id.values() if i.modal is not None and i.modal.get("custom_id") == custom_id
                ]
                if not found:
                    raise LookupError(f"the bot never opened a modal with custom_id {custom_id!r}")
                origin = found[-1]
            assert origin.modal is not None
            channel = self._world.channels[origin.channel_id]
            submitter = user or self._world.users[origin.user_id]
            message = self._world.messages.get(origin.message_id) if origin.message_id else None
        unused = set(values)
        components = _submitted(origin.modal.get("components") or [], values, unused)
        if unused:
            raise LookupError(f"the modal has no inputs {sorted(unused)!r}")
        data: JSON = {"custom_id": origin.modal["custom_id"], "components": components}
        return self._new(InteractionType.MODAL_SUBMIT, data, channel, submitter, message=message)

    def _new(
        self, kind: InteractionType, data: JSON, channel: FakeChannel, user: FakeUser, *, message: JSON | None = None
    ) -> FakeInteraction:
        world = self._world
        with world.lock:
            guild = world.guild_of(channel)
            interaction_id = world.ids.next()
            token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(48)}"
            permissions = str(world.permissions(user.id, channel))
            payload: JSON = {
                "id": str(interaction_id),
                "application_id": str(world.application_id),
                "type": int(kind),
                "data": data,
                "channel_id": str(channel.id),
                "channel": world.channel_payload(channel) | {"permissions": permissions},
                "token": token,
                "version": 1,
                "app_permissions": str(world.permissions(world.bot.id, channel)),
                "locale": "en-US",
                "entitlements": [],
                "attachment_size_limit": 10 * 1024 * 1024,
            }
            if guild is not None:
                member = guild.members.get(user.id)
                if member is None:
                    raise LookupError(f"{user.username} is not a member of {guild.name}")
                payload |= {
                    "guild_id": str(guild.id),
                    "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "member": member.payload() | {"permissions": permissions},
                    "authorizing_integration_owners": {"0": str(guild.id)},
                    "context": 0,
                }
            else:
                payload |= {"user": user.payload(), "authorizing_integration_owners": {"0": "0"}, "context": 1}
            if message is not None:
                payload["message"] = message
            interaction = FakeInteraction(
                id=interaction_id,
                token=token,
                type=kind,
                channel_id=channel.id,
                guild_id=None if guild is None else guild.id,
                user_id=user.id,
                payload=payload,
            )
            self._by_id[interaction_id] = interaction
            return interaction

    def _options(
        self,
        specs: Sequence[JSON],
        path: Sequence[str],
        values: Mapping[str, OptionValue],
        channel: FakeChannel,
        resolved: JSON,
    ) -> list[JSON]:
        if path:
            spec = next((s for s in specs if s["name"] == path[0] and s["type"] in CONTAINER_OPTIONS), None)
            if spec is None:
                raise LookupError(
                    f"no subcommand {path[0]!r}; there are {[s['name'] for s in specs if s['type'] in CONTAINER_OPTIONS]}"
                )
            inner = self._options(spec.get("options") or [], path[1:], values, channel, resolved)
            return [{"name": spec["name"], "type": spec["type"], "options": inner}]
        by_name = {s["name"]: s for s in specs if s["type"] not in CONTAINER_OPTIONS}
        if specs and not by_name:
            raise LookupError(f"the command needs a subcommand: one of {[s['name'] for s in specs]}")
        missing = [n for n, s in by_name.items() if s.get("required") and n not in values]
        if missing or set(values) - set(by_name):
            raise LookupError(
                f"options {sorted(values)} do not fit the command's {sorted(by_name)} (required: {missing})"
            )
        return [self._option(by_name[name], value, channel, resolved) for name, value in values.items()]

    def _option(self, spec: JSON, value: OptionValue, channel: FakeChannel, resolved: JSON) -> JSON:
        kind = OptionType(spec["type"])
        world = self._world
        raw: object
        match value:
            case FakeUser() if kind in (OptionType.USER, OptionType.MENTIONABLE):
                resolved.setdefault("users", {})[str(value.id)] = value.payload()
                guild = world.guild_of(channel)
                if guild is not None and (member := guild.members.get(value.id)) is not None:
                    perms = str(world.permissions(value.id, channel))
                    resolved.setdefault("members", {})[str(value.id)] = member.payload(with_user=False) | {
                        "permissions": perms
                    }
                raw = str(value.id)
            case FakeRole() if kind in (OptionType.ROLE, OptionType.MENTIONABLE):
                resolved.setdefault("roles", {})[str(value.id)] = value.payload()
                raw = str(value.id)
            case FakeChannel() if kind is OptionType.CHANNEL:
                perms = str(world.permissions(world.bot.id, value))
                resolved.setdefault("channels", {})[str(value.id)] = world.channel_payload(value) | {
                    "permissions": perms
                }
                raw = str(value.id)
            case FakeAttachment() if kind is OptionType.ATTACHMENT:
                with world.lock:
                    attachment_id = world.ids.next()
                    world.blobs[attachment_id] = value
                    payload = world.attachment_payload(attachment_id, channel, value)
                resolved.setdefault("attachments", {})[str(attachment_id)] = payload
                raw = str(attachment_id)
            case bool() if kind is OptionType.BOOLEAN:
                raw = value
            case int() if kind in (OptionType.INTEGER, OptionType.NUMBER) and not isinstance(value, bool):
                raw = value
            case float() if kind is OptionType.NUMBER:
                raw = value
            case str() if kind is OptionType.STRING:
                choices = spec.get("choices")
                if choices and value not in [c["value"] for c in choices]:
                    raise LookupError(f"{value!r} is not one of the choices of option {spec['name']!r}")
                raw = value
            case _:
                raise TypeError(f"option {spec['name']!r} is a {kind.name}; {value!r} cannot be one")
        return {"name": spec["name"], "type": int(kind), "value": raw}

    # -- responding ----------------------------------------------------------------------
    def find(self, interaction_id: int, token: str) -> FakeInteraction:
        """The interaction a callback names, if its token matches and it is not too late to answer."""
        with self._world.lock:
            interaction = self._by_id.get(interaction_id)
        if interaction is None or not secrets.compare_digest(interaction.token, token):
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_INTERACTION, "Unknown interaction")
        late = self.deadline is not None and time.monotonic() - interaction.created > self.deadline
        if interaction.response_type is None and late:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_INTERACTION, "Unknown interaction")
        if interaction.response_type is not None:
            raise DiscordHTTPError.of(
                400, ErrorCode.INTERACTION_ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged."
            )
        return interaction

    def by_token(self, application_id: int, token: str) -> FakeInteraction:
        """The interaction behind a webhook (application id, token) once it was answered."""
        with self._world.lock:
            found = [i for i in self._by_id.values() if secrets.compare_digest(i.token, token)]
        if application_id != self._world.application_id or not found or found[0].response_type is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_WEBHOOK, "Unknown Webhook")
        return found[0]

    def webhook_message(self, interaction: FakeInteraction, message_id: str) -> int:
        """A message id in a webhook route ("@original" or a follow-up's) that belongs to the interaction."""
        if message_id == "@original":
            if interaction.original_message_id is None:
                raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_MESSAGE, "Unknown Message")
            return interaction.original_message_id
        wanted = int(message_id) if message_id.isdigit() else -1
        if (
            wanted not in (interaction.original_message_id, *interaction.followup_ids)
            or wanted not in self._world.messages
        ):
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_MESSAGE, "Unknown Message")
        return wanted


def _walk(components: Sequence[JSON]) -> Iterator[JSON]:
    for component in components:
        yield component
        yield from _walk(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from _walk([component["component"]])
        if isinstance(component.get("accessory"), dict):
            yield from _walk([component["accessory"]])


def _submitted(components: Sequence[JSON], values: Mapping[str, str | Sequence[str]], unused: set[str]) -> list[JSON]:
    """The modal's layout as a submission carries it: rows and labels kept, inputs with their values."""
    out: list[JSON] = []
    for component in components:
        kind = component.get("type")
        base = {"type": kind} | ({"id": component["id"]} if "id" in component else {})
        if kind == 1:
            out.append(base | {"components": _submitted(component.get("components") or [], values, unused)})
        elif kind == 18:
            out.append(base | {"component": _submitted([component["component"]], values, unused)[0]})
        elif "custom_id" in component:
            custom_id = component["custom_id"]
            unused.discard(custom_id)
            value = values.get(custom_id)
            if kind == 4:
                text = value if isinstance(value, str) else component.get("value") or ""
                if component.get("required", True) and not text:
                    raise LookupError(f"text input {custom_id!r} is required")
                out.append(base | {"custom_id": custom_id, "value": text})
            else:
                chosen = [value] if isinstance(value, str) else list(value or [])
                out.append(base | {"custom_id": custom_id, "values": chosen})
    return out
