"""What the packaged embedding model costs: disk per distribution, load time and RSS, side by side.

    python tests/bench/bench_model_footprint.py [--baseline-python OTHER/.venv/bin/python] [--runs 5]

Disk: the bytes on disk of each distribution's files (its RECORD, bytecode included) in the venv of each
interpreter, for the distributions the model brings (and those the locks leave out, where installed).
Load: each figure is [median, min, max] over fresh processes, interleaved between the interpreters,
each importing what a worker imports, then loading the embedder and embedding one text, then the first
core-intent classification (which trains the core model). Both interpreters run this checkout's code:
only the installed packages differ. Run it under `flock /tmp/sb-exclusive.lock`; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The model's own distributions, then what their metadata asks for that the locks leave out (Makefile).
MODEL = ["numpy", "wordllama", "tokenizers"]
LEFT_OUT = [
    "huggingface-hub",
    "hf-xet",
    "fsspec",
    "filelock",
    "tqdm",
    "requests",
    "urllib3",
    "charset-normalizer",
    "toml",
    "safetensors",
]

_DISK_PROBE = """
import json, os, sys, sysconfig
from importlib.metadata import distributions
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"])
sizes, seen = {}, set()
for dist in distributions(path=[str(site)]):
    total = 0
    for name in dist.files or []:
        path = (site / name).resolve()
        if path not in seen and path.is_file():
            seen.add(path)
            total += path.stat().st_blocks * 512
    sizes[dist.metadata["Name"].lower().replace("_", "-")] = total
everything = sum(
    Path(d, f).stat().st_blocks * 512 for d, _, files in os.walk(site) for f in files
)
print(json.dumps({"site_packages": everything, "sizes": sizes}))
"""

_LOAD_PROBE = """
import json, sys, time
def status():
    out = {}
    for line in open('/proc/self/status'):
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'RssAnon', 'RssFile', 'VmHWM'):
            out[key] = int(value.split()[0]) / 1024
    return out
def clocks():
    return time.perf_counter(), time.process_time()
w0, c0 = clocks()
import app.roots  # what a worker imports
w1, c1 = clocks()
imported = status()
from app.services.ai.embedding import embedder
embedder().embed('where is my order?')
w2, c2 = clocks()
loaded = status()
from app.services.ai.hybrid import core_intent_model
core_intent_model().classify('I was charged twice')
w3, c3 = clocks()
classified = status()
print(json.dumps({
    'worker_imports_wall_ms': (w1 - w0) * 1e3, 'worker_imports_cpu_ms': (c1 - c0) * 1e3,
    'model_load_wall_ms': (w2 - w1) * 1e3, 'model_load_cpu_ms': (c2 - c1) * 1e3,
    'first_core_classify_wall_ms': (w3 - w2) * 1e3, 'first_core_classify_cpu_ms': (c3 - c2) * 1e3,
    'rss_worker_imports_mb': imported['VmRSS'],
    'rss_with_model_mb': loaded['VmRSS'], 'rss_with_model_anon_mb': loaded['RssAnon'],
    'rss_with_model_file_mb': loaded['RssFile'],
    'rss_after_first_classify_mb': classified['VmRSS'], 'peak_rss_mb': classified['VmHWM'],
    'left_out_imported': [m for m in ('wordllama', 'huggingface_hub', 'requests', 'safetensors')
                          if m in sys.modules],
}))
"""


def _run(python: str, code: str) -> dict:
    done = subprocess.run(
        [python, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def disk(python: str) -> dict:
    found = _run(python, _DISK_PROBE)
    sizes = found["sizes"]
    mb = {name: round(sizes[name] / 1e6, 2) for name in MODEL + LEFT_OUT if name in sizes}
    return {
        "site_packages_mb": round(found["site_packages"] / 1e6, 1),
        "model_mb": round(sum(sizes.get(n, 0) for n in MODEL + LEFT_OUT) / 1e6, 1),
        "per_distribution_mb": mb,
    }


def load(pythons: dict[str, str], runs: int) -> dict:
    samples: dict[str, list[dict]] = {label: [] for label in pythons}
    for _ in range(runs):
        for label, python in pythons.items():
            samples[label].append(_run(python, _LOAD_PROBE))
    out = {}
    for label, rows in samples.items():
        summary: dict = {
            "runs": len(rows),
            "left_out_imported": sorted({m for r in rows for m in r.pop("left_out_imported")}),
        }
        for key in rows[0]:
            values = sorted(r[key] for r in rows)
            summary[key] = [round(statistics.median(values), 1), round(values[0], 1), round(values[-1], 1)]
        out[label] = summary
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", help="another venv's python, measured beside this one")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pythons = {"this": sys.executable}
    if args.baseline_python:
        pythons["baseline"] = args.baseline_python
    report = {
        "pythons": pythons,
        "disk": {label: disk(python) for label, python in pythons.items()},
        "load": load(pythons, args.runs),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
