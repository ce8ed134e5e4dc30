"""Who may use the console: the token, signed session cookies, CSRF tokens, login rate limits.

**Sessions are stateless.** A session cookie is `v1.<expiry>.<nonce>.<mac>`, the MAC an
HMAC-SHA256 under a key derived from the console token. Any replica with the same token accepts
it, a restart keeps operators logged in, and changing the token logs everyone out. Logging out
clears the browser's cookie; a copied cookie stays valid until it expires (`session_hours`).

**CSRF.** Each session has one CSRF token (an HMAC of its nonce under a second derived key):
every form carries it, every POST is refused without it. Cookies are also SameSite=Strict.

**Login attempts** are limited per client address and overall, in this process, so a token
cannot be guessed by trying; with several replicas each keeps its own count.

The token is compared in constant time (digests of equal length) and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginLimiter", "Session", "SessionKeys"]

_VERSION = "v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A verified session: its nonce (which the CSRF token is bound to) and when it ends."""

    nonce: str
    expires_at: int
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SessionKeys:
    """Issues and checks session cookies and CSRF tokens, keyed from the console token."""

    def __init__(self, token: str, *, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        secret = token.encode()
        self._token_digest = hashlib.sha256(secret).digest()
        self._session_key = hmac.new(secret, b"membot console session v1", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"membot console csrf v1", hashlib.sha256).digest()
        self._lifetime_s = lifetime_s
        self._clock = clock

    @property
    def lifetime_s(self) -> int:
        return int(self._lifetime_s)

    def is_token(self, candidate: str) -> bool:
        """Whether `candidate` is the console token, in time independent of where they differ."""
        return hmac.compare_digest(hashlib.sha256(candidate.encode()).digest(), self._token_digest)

    def issue(self) -> str:
        """A new session cookie value."""
        expires = int(self._clock() + self._lifetime_s)
        body = f"{_VERSION}.{expires}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac(body)}"

    def verify(self, cookie: str | None) -> Session | None:
        """The session a cookie value stands for; None when it is absent, forged or expired."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac(body)):
            return None
        try:
            expires = int(parts[1])
        except ValueError:
            return None
        if expires <= self._clock():
            return None
        return Session(nonce=parts[2], expires_at=expires, csrf=self._csrf_of(parts[2]))

    def is_csrf(self, session: Session, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), session.csrf.encode())

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._session_key, body.encode(), hashlib.sha256).digest())

    def _csrf_of(self, nonce: str) -> str:
        return _b64(hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).digest())


class LoginLimiter:
    """Failed logins allowed per client and overall within a sliding window.

    Only failures count, so the operator who types the token right is never slowed. The overall
    cap bounds guessing from many addresses at once (at the price of locking the login for a
    minute while someone tries); the table of clients is bounded too."""

    def __init__(
        self,
        *,
        per_client: int = 5,
        overall: int = 60,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_client, self._overall, self._window_s = per_client, overall, window_s
        self._max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0: now."""
        now = self._clock()
        self._expire(self._all, now)
        waits = [0.0]
        if len(self._all) >= self._overall:
            waits.append(self._all[0] + self._window_s - now)
        mine = self._clients.get(client)
        if mine is not None:
            self._expire(mine, now)
            if len(mine) >= self._per_client:
                waits.append(mine[0] + self._window_s - now)
        return int(max(waits) + 0.999)

    def failed(self, client: str) -> None:
        now = self._clock()
        self._all.append(now)
        mine = self._clients.pop(client, None) or deque()
        mine.append(now)
        self._clients[client] = mine  # most recent last
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self._window_s:
            times.popleft()
