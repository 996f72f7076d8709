"""Switchboard's running service (the version lives here; pyproject.toml reads it)."""

import os

__version__ = "0.1.0"

# numpy's BLAS single-threaded unless the environment says otherwise: the intent engine's matrices
# are small, and concurrent turns already use every core; BLAS threads spinning against them made a
# 100-action training 3x slower on a busy 2-core host (bench_intents.py). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
