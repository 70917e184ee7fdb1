"""Generated scenes on disk: a folder per scene with its views as PNGs, the held-out views apart,
and the exact ground truth (`ground_truth.npz`, `cameras.json`) that `zipmap eval` scores against."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cancel import Progress
from ..io.atomic import atomic_folder
from ..io.preprocess import unit_bytes_np
from .synthetic import SceneViews, generate


def write_scene(views: SceneViews, index: int, folder: str | Path, held_out: int = 0) -> Path:
    """Writes scene `index` of a batch as PNGs plus `ground_truth.npz` and `cameras.json`.
    The last `held_out` views go to `held_out/`, the rest to `images/`."""
    from PIL import Image

    folder = Path(folder)
    s = views.images.shape[1]
    names = []
    for i in range(s):
        sub = "held_out" if i >= s - held_out else "images"
        (folder / sub).mkdir(parents=True, exist_ok=True)
        name = f"{sub}/view_{i:03d}.png"
        arr = unit_bytes_np(views.images[index, i].permute(1, 2, 0).cpu().numpy())
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    np.savez_compressed(
        folder / "ground_truth.npz",
        depth=views.depth[index].cpu().numpy().astype(np.float32),
        extrinsics=views.extrinsics[index].cpu().numpy().astype(np.float64),
        intrinsics=views.intrinsics[index].cpu().numpy().astype(np.float64),
        names=np.array(names),
    )
    meta = {
        "format": "zipmap-synthetic",
        "version": 1,
        "views": names,
        "held_out": held_out,
        "conventions": "extrinsics world-to-camera OpenCV, depth = z in metres, world y up",
    }
    (folder / "cameras.json").write_text(json.dumps(meta, indent=2))
    return folder


@dataclass
class GroundTruth:
    names: list[str]
    depth: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    held_out: int

    @property
    def input_names(self) -> list[str]:
        return self.names[: len(self.names) - self.held_out]


def read_ground_truth(folder: str | Path) -> GroundTruth:
    folder = Path(folder)
    with np.load(folder / "ground_truth.npz", allow_pickle=False) as z:
        meta = json.loads((folder / "cameras.json").read_text())
        return GroundTruth([str(n) for n in z["names"]], z["depth"], z["extrinsics"], z["intrinsics"], int(meta["held_out"]))


def interleave_held_out(views: SceneViews, held_out: int) -> SceneViews:
    """Moves `held_out` evenly spaced views of a trajectory to the end, so each held-out camera
    lies between input cameras (what a novel-view test needs)."""
    s = views.images.shape[1]
    if held_out <= 0:
        return views
    picked = [round((i + 0.5) * s / held_out) for i in range(held_out)]
    order = [i for i in range(s) if i not in picked] + picked
    return views.select(order)


def make_dataset(
    folder: str | Path,
    scenes: int,
    views: int,
    held_out: int,
    seed: int,
    image_hw: tuple[int, int],
    trajectory: str | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Writes `scenes` scene folders (`scene_0000`, ...) with ground truth; one scene per render call
    keeps memory flat."""
    out = []
    for i in range(scenes):
        v = generate(1, views + held_out, seed + i, image_hw, trajectory=trajectory)
        target = Path(folder) / f"scene_{i:04d}"
        with atomic_folder(target) as tmp:
            write_scene(interleave_held_out(v, held_out), 0, tmp, held_out)
        out.append(target)
        if progress is not None:
            progress("generate", i + 1, scenes)
    return out
