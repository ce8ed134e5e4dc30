"""Application commands in the fake Discord: what an application registered, globally and per guild.

`CommandRegistry` validates commands as Discord does (lower-case names of 1-32 word
characters, 1-100 character descriptions for slash commands and their options, at most 25
options, required options first, unique names; 400 50035 otherwise) and keeps a command's
id when a bulk overwrite keeps its name and type, as Discord does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tests.fakes.discord_wire import JSON, DiscordHTTPError, ErrorCode, OptionType, form_error
from tests.fakes.discord_world import World

__all__ = ["CONTAINER_OPTIONS", "CommandRegistry"]

_NAME = re.compile(r"^[-_\w]{1,32}$")
CONTAINER_OPTIONS = (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)


class CommandRegistry:
    """Registered application commands: key None for global ones, else the guild id."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._commands: dict[int | None, dict[int, JSON]] = {}

    def in_scope(self, guild_id: int | None) -> list[JSON]:
        with self._world.lock:
            return list(self._commands.get(guild_id, {}).values())

    def get(self, guild_id: int | None, command_id: int) -> JSON:
        with self._world.lock:
            command = self._commands.get(guild_id, {}).get(command_id)
        if command is None:
            raise DiscordHTTPError.of(404, ErrorCode.UNKNOWN_APPLICATION_COMMAND, "Unknown application command")
        return command

    def overwrite(self, guild_id: int | None, payloads: Sequence[JSON]) -> list[JSON]:
        """PUT (bulk overwrite): the new set replaces the old; a kept (name, type) keeps its id."""
        names: set[tuple[str, int]] = set()
        for index, payload in enumerate(payloads):
            _check_command(payload, prefix=f"{index}.")
            key = (payload["name"], int(payload.get("type", 1)))
            if key in names:
                problem = form_error(
                    f"{index}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
                )
                raise DiscordHTTPError(400, problem)
            names.add(key)
        with self._world.lock:
            old = {(c["name"], c["type"]): int(c["id"]) for c in self._commands.get(guild_id, {}).values()}
            commands = [self._render(guild_id, p, old.get((p["name"], int(p.get("type", 1))))) for p in payloads]
            self._commands[guild_id] = {int(c["id"]): c for c in commands}
            return commands

    def upsert(self, guild_id: int | None, payload: JSON) -> tuple[JSON, bool]:
        """POST: create, or replace the command of that name and type. Returns (command, created)."""
        _check_command(payload, prefix="")
        with self._world.lock:
            existing = self._commands.setdefault(guild_id, {})
            same = [
                i for i, c in existing.items() if (c["name"], c["type"]) == (payload["name"], payload.get("type", 1))
            ]
            command = self._render(guild_id, payload, same[0] if same else None)
            existing[int(command["id"])] = command
            return command, not same

    def edit(self, guild_id: int | None, command_id: int, changes: JSON) -> JSON:
        with self._world.lock:
            merged = self.get(guild_id, command_id) | changes
            _check_command(merged, prefix="")
            command = self._render(guild_id, merged, command_id)
            self._commands[guild_id][command_id] = command
            return command

    def delete(self, guild_id: int | None, command_id: int) -> None:
        with self._world.lock:
            self.get(guild_id, command_id)
            del self._commands[guild_id][command_id]

    def find(self, name: str, guild_id: int | None) -> JSON | None:
        """The slash command an invocation of `name` in that guild (or a DM) reaches: guild first, then global."""
        with self._world.lock:
            for scope in (guild_id, None) if guild_id is not None else (None,):
                for command in self._commands.get(scope, {}).values():
                    if command["name"] == name and command["type"] == 1:
                        return command
            return None

    def _render(self, guild_id: int | None, payload: JSON, command_id: int | None) -> JSON:
        command: JSON = {
            "id": str(command_id or self._world.ids.next()),
            "application_id": str(self._world.application_id),
            "version": str(self._world.ids.next()),
            "type": int(payload.get("type", 1)),
            "name": payload["name"],
            "name_localizations": payload.get("name_localizations"),
            "description": payload.get("description", ""),
            "description_localizations": payload.get("description_localizations"),
            "options": payload.get("options") or [],
            "default_member_permissions": payload.get("default_member_permissions"),
            "nsfw": bool(payload.get("nsfw", False)),
            "contexts": payload.get("contexts"),
            "integration_types": payload.get("integration_types") or [0],
        }
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        return command


def _check_command(payload: JSON, *, prefix: str) -> None:
    """Discord's shape rules for a command: lower-case names of 1-32 word characters, 1-100 character
    descriptions for slash commands and their options, at most 25 options, required options first."""
    kind = int(payload.get("type", 1))
    name = payload.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or (kind == 1 and name != name.lower()):
        raise DiscordHTTPError(
            400, form_error(f"{prefix}name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        )
    if kind == 1:
        _check_options(payload, prefix=prefix)


def _check_options(payload: JSON, *, prefix: str) -> None:
    description = payload.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        raise DiscordHTTPError(
            400, form_error(f"{prefix}description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        )
    options = payload.get("options") or []
    if len(options) > 25:
        raise DiscordHTTPError(
            400, form_error(f"{prefix}options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        )
    seen_optional = False
    for index, option in enumerate(options):
        where = f"{prefix}options.{index}."
        name = option.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name != name.lower():
            raise DiscordHTTPError(
                400, form_error(f"{where}name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            )
        if option.get("required") and seen_optional:
            problem = form_error(
                f"{where}required",
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            )
            raise DiscordHTTPError(400, problem)
        seen_optional = seen_optional or not option.get("required")
        _check_options(option, prefix=where) if option.get("type") in CONTAINER_OPTIONS else _check_description(
            option, where
        )


def _check_description(option: JSON, where: str) -> None:
    description = option.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        raise DiscordHTTPError(
            400, form_error(f"{where}description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        )
