"""Start-up objects are frozen out of the garbage collector's full scans."""

from __future__ import annotations

import gc

from app.services.lifecycle import freeze_startup_heap


def test_freezing_moves_live_objects_out_of_the_collected_generations() -> None:
    kept = [object() for _ in range(1000)]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(kept)
        assert all(len(gc.get_objects(generation)) < gc.get_freeze_count() for generation in range(3))
    finally:
        gc.unfreeze()
