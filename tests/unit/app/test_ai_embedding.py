"""The packaged embedding table, read with our safetensors reader and memory-mapped."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.services.ai.embedding import WEIGHTS, EmbeddingModelMissing, map_table, package_dir

ROOT = Path(__file__).resolve().parents[3]


def write_safetensors(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_the_packaged_table_reads_as_the_safetensors_library_reads_it() -> None:
    from safetensors.numpy import load_file

    path = package_dir() / WEIGHTS
    (expected,) = load_file(str(path)).values()
    table = map_table(path)
    assert isinstance(table, np.memmap) and table.shape == (32000, 256) and table.dtype == np.float16
    assert np.array_equal(np.asarray(table), expected)


def test_a_small_table_round_trips(tmp_path: Path) -> None:
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    header = {"__metadata__": {}, "emb": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]}}
    table = map_table(write_safetensors(tmp_path / "t.safetensors", header, values.tobytes()))
    assert np.array_equal(table, values)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            {"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}, "b": {}},
            "expected one embedding table",
        ),
        ({"a": {"dtype": "I8", "shape": [2, 2], "data_offsets": [0, 4]}}, "expected a 2-D float16/float32"),
        ({"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 6]}}, "does not match its shape"),
    ],
)
def test_a_malformed_table_says_what_is_wrong(tmp_path: Path, header: dict, reason: str) -> None:
    path = write_safetensors(tmp_path / "bad.safetensors", header, bytes(8))
    with pytest.raises(EmbeddingModelMissing, match=reason):
        map_table(path)


def test_the_model_loads_offline_and_imports_nothing_the_locks_leave_out() -> None:
    """In a private network namespace the embedder loads from the wheel's files alone: wordllama's code
    and what the locks leave out (huggingface_hub, requests; safetensors in the image) are never imported."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is needed for this test (apt-get install util-linux)"
    code = (
        "import json, sys\n"
        "from app.services.ai.embedding import embedder\n"
        "vector = embedder().embed('where is my order?')\n"
        "left_out = ('wordllama', 'huggingface_hub', 'requests', 'safetensors', 'hf_xet', 'fsspec')\n"
        "print(json.dumps({'dim': len(vector), 'norm': float((vector * vector).sum()),"
        " 'imported': [m for m in left_out if m in sys.modules]}))\n"
    )
    done = subprocess.run(
        [unshare, "-n", sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["dim"] == 256 and abs(result["norm"] - 1) < 1e-5
    assert result["imported"] == []
