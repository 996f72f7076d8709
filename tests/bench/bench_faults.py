"""The chaos scenarios of issue 13 at a larger scale; prints one JSON object of figures per scenario.

Worker killed 12 times in a 12 messages/s stream over 40 conversations (Graph API answering in
0.3 s); one of two workers frozen until SAQ sweeps its jobs; Redis flushed twice mid-buffer with
two conversations handed to a person; PostgreSQL stopped for 6 s three times; a burst of 5,000
single-message conversations at buffer 0 with one worker. Each against a PostgreSQL and a Redis
of its own (tests.support.chaos). With --baseline DIR, each scenario runs first against the
checkout in DIR (e.g. `git archive main | tar -x -C DIR`), then against this one, side by side.

    flock /tmp/sb-exclusive.lock .venv/bin/python tests/bench/bench_faults.py [--only burst,...] \\
        [--baseline DIR [--baseline-only]] [--burst 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from tests.support.chaos import PrivateServices, failed_guarantees  # noqa: E402
from tests.support.chaos_scenarios import BENCH, SCENARIOS, SUITE  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to run each scenario against first")
    parser.add_argument(
        "--baseline-only", action="store_true", help="with --baseline: run that checkout alone"
    )
    parser.add_argument("--burst", type=int, default=BENCH.burst, help="conversations in the burst")
    parser.add_argument("--kills", type=int, default=BENCH.kills)
    parser.add_argument("--suite-scale", action="store_true", help="the suite's scale (a quick look)")
    args = parser.parse_args()
    scale = SUITE if args.suite_scale else msgspec.structs.replace(BENCH, burst=args.burst, kills=args.kills)
    codes: dict[str, Path | None] = {"this": None}
    if args.baseline:
        codes = {"baseline": args.baseline.resolve(), **({} if args.baseline_only else codes)}
    report: dict = {"bench": "faults", "cpus": os.cpu_count(), "scale": msgspec.to_builtins(scale)}
    services = PrivateServices().start()
    try:
        for name in args.only.split(","):
            for label, code in codes.items():
                figures = await SCENARIOS[name](services, scale, code=code)
                figures["guarantees_broken"] = failed_guarantees(figures)
                report.setdefault(name, {})[label] = figures
    finally:
        services.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
