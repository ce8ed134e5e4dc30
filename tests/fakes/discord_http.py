"""The fake Discord's HTTP front: how every REST call is parsed, authenticated, pre-empted, served and recorded.

`Endpoint`s (method, route template, handler, whether the bot token is needed) are mounted
under /api/v9 and /api/v10. A call is parsed (JSON, or multipart's `payload_json` and its
`files[n]`), checked for `Authorization: Bot <token>` (interaction callbacks and webhook
follow-ups carry their own token instead), answered by a failure a test queued
(`FailureRules`) when one matches, else by its handler, given X-RateLimit-* headers, and
recorded (`RequestLog`) with the answer. JSON goes out as exactly "application/json":
discord.py compares that header verbatim. Unknown paths answer Discord's 404, recorded
with route "*".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mimetypes
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.discord_models import FakeAttachment
from tests.fakes.discord_requests import FailureRules, RecordedFile, RecordedRequest, Reply, RequestLog, json_of
from tests.fakes.discord_wire import JSON, DiscordHTTPError, error_body, form_error, rate_limit_headers

__all__ = ["Call", "Endpoint", "Handler", "HttpFront", "uploads"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A parsed REST call, as handlers see it."""

    method: str
    path: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    files: tuple[RecordedFile, ...]

    def id(self, name: str) -> int:
        """A snowflake from the path; 400 (50035) when it is not one."""
        value = self.params[name]
        if not value.isdigit():
            raise DiscordHTTPError(400, form_error(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.'))
        return int(value)

    @property
    def body(self) -> JSON:
        """The JSON body when it is an object, else {}."""
        return json_of(self.json)

    def with_body(self, body: JSON) -> Call:
        return dataclasses.replace(self, json=body)


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    route: str
    handler: Handler
    needs_auth: bool = True


class HttpFront:
    """Mounts endpoints on an aiohttp app and runs each call through the pipeline above."""

    def __init__(self, *, token: str, log: RequestLog, failures: FailureRules) -> None:
        self._token = token
        self._log = log
        self._failures = failures

    def mount(self, app: web.Application, endpoints: Sequence[Endpoint]) -> None:
        for endpoint in endpoints:
            serve = self._serve(endpoint.route, endpoint.handler, needs_auth=endpoint.needs_auth)
            app.router.add_route(endpoint.method, r"/api/v{version:(9|10)}" + endpoint.route, serve)

    def mount_fallback(self, app: web.Application) -> None:
        """Mount last: everything unrouted answers Discord's 404 (and is recorded)."""

        async def unknown(call: Call) -> Reply:
            return Reply(status=404, body=error_body(0, "404: Not Found"))

        app.router.add_route("*", "/{tail:.*}", self._serve("*", unknown, needs_auth=False))

    def _serve(
        self, route: str, handler: Handler, *, needs_auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            path = request.path.split("/", 3)[3] if request.path.startswith("/api/v") else request.path.lstrip("/")
            call = Call(
                method=request.method,
                path="/" + path,
                route=route,
                params={k: v for k, v in request.match_info.items() if k not in ("version", "tail")},
                query=dict(request.query),
                headers=dict(request.headers),
                json=None,
                files=(),
            )
            try:
                body, files = await _read_body(request)
            except DiscordHTTPError as error:
                reply = Reply(status=error.status, body=error.body)
            else:
                call = dataclasses.replace(call, json=body, files=files)
                reply = await self._answer(call, handler, needs_auth=needs_auth)
            fields = {f.name: getattr(call, f.name) for f in dataclasses.fields(call)}
            self._log.record(RecordedRequest(**fields, status=reply.status, response=reply.body))
            if reply.status == 204 or reply.body is None:
                return web.Response(status=reply.status, headers=reply.headers)
            headers = {**reply.headers, "Content-Type": "application/json"}
            return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)

        return serve

    async def _answer(self, call: Call, handler: Handler, *, needs_auth: bool) -> Reply:
        if needs_auth and call.headers.get("Authorization") != f"Bot {self._token}":
            return Reply(status=401, body=error_body(0, "401: Unauthorized"))
        bucket = hashlib.sha1(f"{call.method} {call.route}".encode()).hexdigest()[:16]
        if (queued := self._failures.take(call.method, call.path, call.route)) is not None:
            if "X-RateLimit-Bucket" in queued.headers:  # a 429 names the route's own bucket
                return dataclasses.replace(queued, headers={**queued.headers, "X-RateLimit-Bucket": bucket})
            return queued
        try:
            reply = await handler(call)
        except DiscordHTTPError as error:
            return Reply(status=error.status, body=error.body)
        headers = rate_limit_headers(bucket, limit=50, remaining=49, reset_after=1.0)
        return dataclasses.replace(reply, headers={**headers, **reply.headers})


def uploads(call: Call) -> list[FakeAttachment]:
    """The call's files as attachments: descriptions from payload_json's `attachments`, types guessed by name."""
    described = {str(a.get("id")): a for a in call.body.get("attachments") or [] if isinstance(a, dict)}
    attachments = []
    for file in call.files:
        index = file.field.removeprefix("files[").removesuffix("]")
        guessed = mimetypes.guess_type(file.filename)[0]
        content_type = guessed if file.content_type == "application/octet-stream" and guessed else file.content_type
        description = described.get(index, {}).get("description")
        attachments.append(
            FakeAttachment(filename=file.filename, data=file.data, content_type=content_type, description=description)
        )
    return attachments


async def _read_body(request: web.Request) -> tuple[Any, tuple[RecordedFile, ...]]:
    """JSON, or multipart's payload_json plus its files; 400 (50109) for a body that is not JSON."""
    if not request.can_read_body:
        return None, ()
    if not request.content_type.startswith("multipart/"):
        text = await request.text()
        return (_parse_json(text) if text else None), ()
    body: Any = None
    files: list[RecordedFile] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is not None:
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            data = bytes(await part.read(decode=False))
            files.append(
                RecordedFile(field=part.name or "", filename=part.filename, content_type=content_type, data=data)
            )
        elif part.name == "payload_json":
            body = _parse_json(await part.text())
    return body, tuple(files)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise DiscordHTTPError.of(400, 50109, "The request body contains invalid JSON.") from None
