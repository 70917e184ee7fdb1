"""`zipmap bench refine`: what refining ZipMap's cameras costs as the frames grow, with the pairs
chosen from the predictions (each frame and its k most overlapping) against exhaustive matching.

The scenes are generated (a textured room swept by N cameras, `sfm.test_scenes`) and
their true cameras turned by 2 to 5 degrees stand in for the network's predictions, so the runs
are comparable across N and need no weights. Exhaustive matching is timed up to
`--attention-max` frames (its pairs grow as N^2 / 2) and its pair counts are given for every N."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path
from ..io.reconstruction import Reconstruction
from ..metrics import aligned_rotation_errors
from ..sfm.pairs import NEIGHBOURS, exhaustive_pairs, overlap_pairs
from ..sfm.refine import refine
from ..sfm.test_scenes import textured_room, turned

HW = (240, 320)


def timed_refine(start: Reconstruction, truth: Reconstruction, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Seconds per stage and in all, and the refined cameras' rotation errors."""
    stages: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        stages.setdefault(stage, [now, now])[1] = now

    t0 = time.perf_counter()
    out = refine(start, fixed_intrinsics=True, progress=progress, pairs=pairs)
    total = time.perf_counter() - t0
    errors = aligned_rotation_errors(out.extrinsics[:, :, :3].astype(np.float64), truth.extrinsics[:, :, :3].astype(np.float64))
    return {
        "pairs": len(pairs),
        "seconds": total,
        "stage_seconds": {k: v[1] - v[0] for k, v in stages.items()},
        "path": out.metadata["refine"]["path"],
        "rotation_error_p90_deg": float(np.percentile(errors, 90)),
        "error_after_px": out.metadata["refine"]["error_after_px"],
    }


def slope(ns: list[int], seconds: list[float]) -> float:
    """The log-log slope of seconds against N (1: linear, 2: quadratic)."""
    return float(np.polyfit(np.log(ns), np.log(seconds), 1)[0])


def bench_refine(frames: list[int], exhaustive_max: int, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for n in frames:
        truth = textured_room(n, seed=n, hw=HW)
        start = turned(truth, (2.0, 5.0), seed=n)
        chosen = overlap_pairs(start.extrinsics, start.intrinsics, start.depth, NEIGHBOURS)
        row: dict[str, Any] = {"frames": n, "exhaustive_pairs": len(exhaustive_pairs(n)), "linear": timed_refine(start, truth, chosen)}
        if n <= exhaustive_max:
            row["exhaustive"] = timed_refine(start, truth, exhaustive_pairs(n))
        rows.append(row)
        ex = row.get("exhaustive", {})
        log(
            f"N={n}: linear {row['linear']['pairs']} pairs {row['linear']['seconds']:.1f} s; "
            f"exhaustive {row['exhaustive_pairs']} pairs {ex.get('seconds', float('nan')):.1f} s"
        )
    ns = [r["frames"] for r in rows]
    timed = [r for r in rows if "exhaustive" in r]
    summary = {
        "linear_time_slope": slope(ns, [r["linear"]["seconds"] for r in rows]),
        "linear_pairs_slope": slope(ns, [r["linear"]["pairs"] for r in rows]),
        "exhaustive_time_slope": slope([r["frames"] for r in timed], [r["exhaustive"]["seconds"] for r in timed])
        if len(timed) > 1
        else None,
        "exhaustive_over_linear_seconds_at_largest_timed": (timed[-1]["exhaustive"]["seconds"] / timed[-1]["linear"]["seconds"])
        if timed
        else None,
        "linear_rotation_error_p90_deg_worst": max(r["linear"]["rotation_error_p90_deg"] for r in rows),
    }
    result = {
        "what": "refine of cameras turned 2-5 degrees from the truth, textured room at 320x240, "
        "k = 8 by predicted overlap vs exhaustive pairs",
        "neighbours": NEIGHBOURS,
        "image_hw": list(HW),
        "rows": rows,
        "summary": summary,
    }
    plot(result, out_dir / "refine.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ns = [r["frames"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(ns, [r["linear"]["pairs"] for r in rows], "o-", label="pairs by predicted overlap (k = 8)")
    a.loglog(ns, [r["exhaustive_pairs"] for r in rows], "s--", label="exhaustive pairs")
    a.set_xlabel("frames")
    a.set_ylabel("pairs matched")
    a.legend()
    b.loglog(ns, [r["linear"]["seconds"] for r in rows], "o-", label=f"linear (slope {result['summary']['linear_time_slope']:.2f})")
    timed = [r for r in rows if "exhaustive" in r]
    b.loglog([r["frames"] for r in timed], [r["exhaustive"]["seconds"] for r in timed], "s--", label="exhaustive")
    b.set_xlabel("frames")
    b.set_ylabel("seconds to refine")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
