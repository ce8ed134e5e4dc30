"""The Slack Web API client membot uses: the configured base URL and slack_sdk's own async
retry handlers, each bounded, so nothing is retried forever.

- rate limited (HTTP 429): wait `Retry-After` (plus jitter) and retry, twice at most;
- server errors (HTTP 500/503): retry twice with backoff;
- connection errors: retry twice with backoff.

After that a call fails with `SlackApiError` (Slack answered `ok: false`) or a transport error;
`SLACK_FAILURES` names them all, and `error_code` says which, for logs and user-facing text.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

__all__ = ["MAX_RETRIES", "SLACK_FAILURES", "error_code", "make_web_client"]

MAX_RETRIES = 2
REQUEST_TIMEOUT_S = 30

#: What a Web API call raises once its retries are spent.
SLACK_FAILURES: tuple[type[Exception], ...] = (SlackClientError, aiohttp.ClientError, TimeoutError)


def make_web_client(*, token: str, api_base_url: str) -> AsyncWebClient:
    """An `AsyncWebClient` for `api_base_url` (e.g. `https://slack.com/api`, GovSlack's, a proxy)."""
    return AsyncWebClient(
        token=token,
        base_url=api_base_url.rstrip("/") + "/",  # slack_sdk joins method names onto it
        timeout=REQUEST_TIMEOUT_S,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=MAX_RETRIES),
            AsyncRateLimitErrorRetryHandler(max_retry_count=MAX_RETRIES),
            AsyncServerErrorRetryHandler(max_retry_count=MAX_RETRIES),
        ],
    )


def error_code(exc: BaseException) -> str:
    """Slack's error code (`channel_not_found`, `ratelimited`, ...) or the transport failure's name."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return type(exc).__name__
