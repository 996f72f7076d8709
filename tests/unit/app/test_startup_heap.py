"""Start-up objects are frozen out of the garbage collector's scans, and young collections run less often."""

from __future__ import annotations

import gc

from app.roots import freeze_startup_heap


def test_freezing_moves_live_objects_out_of_the_collected_generations() -> None:
    kept = [object() for _ in range(1000)]
    thresholds = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(kept)
        assert all(len(gc.get_objects(generation)) < gc.get_freeze_count() for generation in range(3))
        assert gc.get_threshold()[0] > thresholds[0]  # young collections less often than the default
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
