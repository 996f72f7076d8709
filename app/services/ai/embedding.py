"""Packaged static word embeddings (WordLlama's 256-dimension model): text -> unit vector, offline.

The `wordllama` wheel ships its token embeddings (32,000 x 256, float16) and its tokenizer. We read
both files straight from the installed package: `WordLlama.load()` would look for the tokenizer in
`tokenizer/` (the wheel ships `tokenizers/`) and try to download it, and importing the package pulls
in its training and config machinery, which a worker does not need. One model per process, loaded on
first use (about 17 MB resident: the float16 table stays float16; only looked-up rows are widened).
"""

from __future__ import annotations

import functools
import importlib.util
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


class StaticEmbedder:
    """Mean of the message's token vectors, L2-normalised; thread-safe after construction."""

    def __init__(self, weights_path: Path, tokenizer_path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        for path in (weights_path, tokenizer_path):
            if not path.is_file():
                raise EmbeddingModelMissing(f"{path} is missing; reinstall the {PACKAGE!r} package")
        tables = load_file(str(weights_path))
        if len(tables) != 1:
            raise EmbeddingModelMissing(f"{weights_path}: expected one embedding table, found {list(tables)}")
        self.table: np.ndarray = next(iter(tables.values()))
        self.dim = int(self.table.shape[1])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids[:MAX_TOKENS]

    def embed(self, text: str) -> np.ndarray:
        """One unit vector (float32, `dim` long); the zero vector for a text with no tokens."""
        ids = self.token_ids(text)
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
