"""Packaged static word embeddings (WordLlama's 256-dimension model): text -> unit vector, offline.

The `wordllama` wheel ships its token embeddings (32,000 x 256, float16) and its tokenizer. We read
both files straight from the installed package: `WordLlama.load()` would look for the tokenizer in
`tokenizer/` (the wheel ships `tokenizers/`) and try to download it, and importing the package pulls
in its training and config machinery, which a worker does not need. One model per process, loaded on
first use; the float16 table (16 MB) is memory-mapped: its pages are file-backed, shared by the
processes of one machine and given back under memory pressure, and only looked-up rows are widened.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import struct
import threading
from pathlib import Path

import numpy as np

PACKAGE = "wordllama"
WEIGHTS = Path("weights") / "l2_supercat_256.safetensors"
TOKENIZER = Path("tokenizers") / "l2_supercat_tokenizer_config.json"
MAX_TOKENS = 256
"""A chat message longer than this many tokens is embedded from its beginning (latency stays bounded)."""


class EmbeddingModelMissing(RuntimeError):
    """The packaged model files are not installed; `pip install wordllama` (a dependency) brings them."""


def package_dir() -> Path:
    """Where the wordllama package is installed, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(
            f"the {PACKAGE!r} package is not installed; reinstall switchboard (it is a dependency)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_DTYPES = {"F16": np.float16, "F32": np.float32}


def map_table(path: Path) -> np.ndarray:
    """The one tensor of a safetensors file, memory-mapped read-only (rows are read from the page cache).

    The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape
    and byte range, then the raw data. Mapped pages are shared by every process that maps the file.
    """
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(tensors) != 1:
        raise EmbeddingModelMissing(f"{path}: expected one embedding table, found {list(tensors)}")
    (info,) = tensors.values()
    dtype = _DTYPES.get(info["dtype"])
    if dtype is None or len(info["shape"]) != 2:
        raise EmbeddingModelMissing(f"{path}: expected a 2-D float16/float32 table, found {info}")
    begin, end = info["data_offsets"]
    rows, dim = info["shape"]
    if end - begin != rows * dim * np.dtype(dtype).itemsize:
        raise EmbeddingModelMissing(f"{path}: the table's byte range does not match its shape {info}")
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + length + begin, shape=(rows, dim))


class StaticEmbedder:
    """Mean of the message's token vectors, L2-normalised; thread-safe after construction."""

    def __init__(self, weights_path: Path, tokenizer_path: Path) -> None:
        from tokenizers import Tokenizer

        for path in (weights_path, tokenizer_path):
            if not path.is_file():
                raise EmbeddingModelMissing(f"{path} is missing; reinstall the {PACKAGE!r} package")
        self.table: np.ndarray = map_table(weights_path)
        self.dim = int(self.table.shape[1])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids[:MAX_TOKENS]

    def embed(self, text: str) -> np.ndarray:
        """One unit vector (float32, `dim` long); the zero vector for a text with no tokens."""
        return self.embed_ids(self.token_ids(text))

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        """embed() of a text already tokenized by token_ids()."""
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        vec = self.table[ids].astype(np.float32).mean(axis=0)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def embed_many(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.embed(text)
        return out


_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load() -> StaticEmbedder:
    root = package_dir()
    return StaticEmbedder(root / WEIGHTS, root / TOKENIZER)


def embedder() -> StaticEmbedder:
    """The process's one embedder, loaded on first use (a worker that never classifies never loads it)."""
    with _lock:
        return _load()
