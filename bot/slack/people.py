"""Who is who on Slack: `users.info`, cached, for speaker names and the admin check.

Names change rarely and only label messages, so they are kept an hour. Admin flags decide
who may run `/membot`, so they are kept a minute: a demoted admin loses access quickly.
A lookup that fails (Slack down, `user_not_found`, rate limited past our wait) is not cached:
the name falls back to the user id, and the admin check to "not an admin".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import SLACK_FAILURES, error_code

__all__ = ["SlackPeople", "SlackPerson"]

_log = logging.getLogger(__name__)

NAME_TTL_S = 3600.0
ADMIN_TTL_S = 60.0
#: A name is looked up before Slack gets its 3-second acknowledgement: never wait long for it.
NAME_LOOKUP_TIMEOUT_S = 1.5
_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackPerson:
    id: str
    name: str
    is_admin: bool
    is_owner: bool
    is_bot: bool


class SlackPeople:
    """`users.info` answers, cached per user."""

    def __init__(self, client: AsyncWebClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._cache: dict[str, tuple[float, SlackPerson]] = {}

    async def name(self, user_id: str) -> str:
        """The user's display name (else real name, else handle); the id when Slack cannot say."""
        try:
            async with asyncio.timeout(NAME_LOOKUP_TIMEOUT_S):
                person = await self.lookup(user_id, max_age_s=NAME_TTL_S)
        except TimeoutError:
            _log.info("users.info for %s took too long; using the id as the name", user_id)
            return user_id
        return person.name if person is not None else user_id

    async def lookup(self, user_id: str, *, max_age_s: float = ADMIN_TTL_S) -> SlackPerson | None:
        """The user as Slack describes them, at most `max_age_s` old (0: asked now); None when Slack cannot say."""
        cached = self._cache.get(user_id)
        now = self._clock()
        if cached is not None and max_age_s > 0 and now - cached[0] <= max_age_s:
            return cached[1]
        try:
            response = await self._client.users_info(user=user_id)
        except SLACK_FAILURES as exc:
            _log.warning("users.info for %s failed: %s", user_id, error_code(exc))
            return None
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        person = SlackPerson(
            id=user_id,
            name=profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            # An unnamed user still gets a readable label.
            or user_id,
            is_admin=bool(user.get("is_admin")),
            is_owner=bool(user.get("is_owner")),
            is_bot=bool(user.get("is_bot")),
        )
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[user_id] = (now, person)
        return person
