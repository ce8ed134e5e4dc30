"""LoCoMo's data file, downloaded once into the data directory and checked by SHA-256.

The file is CC BY-NC 4.0: it is fetched for the user, never shipped with membot (not in the
repository, a wheel or an image). The URL is pinned to one commit of snap-research/LoCoMo
(`eval.locomo_url`); a file whose size or SHA-256 is not that commit's is refused and removed,
so a moved branch, a proxy's error page or a truncated download never becomes the benchmark.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.errors import ConfigError

__all__ = ["LICENCE_NOTICE", "LOCOMO_SHA256", "LOCOMO_SIZE", "ensure_locomo"]

_log = logging.getLogger(__name__)

#: `data/locomo10.json` at commit 3eb6f2c of snap-research/LoCoMo.
LOCOMO_SHA256 = "79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4"
LOCOMO_SIZE = 2_805_274
LICENCE_NOTICE = (
    "LoCoMo (Maharana et al., ACL 2024, https://github.com/snap-research/LoCoMo) is licensed "
    "CC BY-NC 4.0: non-commercial use, with attribution. membot downloads it for you and never "
    "redistributes it."
)
_CHUNK = 1 << 16
_TIMEOUT_S = 120.0


async def ensure_locomo(
    data_dir: Path,
    *,
    url: str,
    notify: Callable[[str], None],
    sha256: str = LOCOMO_SHA256,
    size: int = LOCOMO_SIZE,
) -> Path:
    """`data_dir/eval/locomo10.json`, downloaded first if missing; `notify` shows the licence."""
    target = data_dir / "eval" / "locomo10.json"
    notify(LICENCE_NOTICE)
    if target.exists():
        if _digest(target) == sha256:
            return target
        raise ConfigError(
            f"{target} is not the pinned LoCoMo file (SHA-256 differs); delete it to download it again, "
            "or pass --data FILE"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.part")
    notify(f"Downloading LoCoMo from {url} ...")
    try:
        await _fetch(url, partial, size_limit=size)
        got_size, got_sha = partial.stat().st_size, _digest(partial)
        if got_size != size or got_sha != sha256:
            raise ConfigError(
                f"{url}: the download is not the pinned LoCoMo file ({got_size} bytes, SHA-256 {got_sha}; "
                f"expected {size} bytes, SHA-256 {sha256}); refused"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    _log.info("LoCoMo saved to %s", target)
    return target


async def _fetch(url: str, path: Path, *, size_limit: int) -> None:
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise ConfigError(f"{url}: HTTP {response.status} while downloading LoCoMo")
            written = 0
            with path.open("wb") as file:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    written += len(chunk)
                    if written > size_limit:
                        break  # longer than the pinned file: the size check refuses it
                    file.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(f"{url}: cannot download LoCoMo ({exc}); pass --data FILE to use a local copy") from exc


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()
