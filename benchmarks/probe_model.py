"""How much a model mixes information across views: the figures quoted in the model card.

A ZipMap model can only recover relative cameras, and render a novel view of *this* scene, if its
global (TTT) layers carry information between frames. This probe measures that directly:

- swap the second half of the input frames for another scene's and see how much the first half's
  depth and poses move (0 means every frame is predicted on its own);
- query the same novel rays against two scenes' states and see how much the rendered RGB and
  depth differ (0 means the novel view ignores the scene state).

    python benchmarks/probe_model.py [CHECKPOINT ...] [--scenes 8]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from zipmap_core.io.checkpoints import load_checkpoint
from zipmap_core.model.geometry import invert_rigid, ray_conditions
from zipmap_core.resources import BUNDLED_MODEL
from zipmap_core.training.normalisation import normalise
from zipmap_core.training.synthetic import generate

SEED = 40_000_000  # beyond the training and evaluation seeds


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean() / a.abs().mean().clamp_min(1e-12))


@torch.inference_mode()
def probe(path: str, scenes: int, views: int = 6, hw: tuple[int, int] = (84, 112)) -> dict:
    model = load_checkpoint(path).model.float().eval()
    depth_moves, shape_moves, pose_moves, rgb_moves, nvs_depth_moves, rgb_spread = [], [], [], [], [], []
    half = views // 2
    for i in range(scenes):
        a = normalise(generate(1, views + 1, SEED + 2 * i, hw), views)[0]
        b = normalise(generate(1, views + 1, SEED + 2 * i + 1, hw), views)[0]
        src_a, src_b = a.images[:, :views], b.images[:, :views]
        mixed = torch.cat([src_a[:, :half], src_b[:, half:]], 1)
        out_a, out_b = model(src_a, window_size=0), model(src_b, window_size=0)
        out_mixed = model(mixed, window_size=0)
        d_a, d_mixed = out_a.depth[:, :half], out_mixed.depth[:, :half]
        depth_moves.append(_rel(d_a, d_mixed))
        # the same after matching the median: a shared scale is one number, the shape is per pixel
        shape_moves.append(_rel(d_a, d_mixed * (d_a.median() / d_mixed.median())))
        pose_moves.append(float((out_a.pose_enc[:, 1:half] - out_mixed.pose_enc[:, 1:half]).abs().mean()))
        if model.can_render:
            q = a.select(slice(views, None))
            rays = ray_conditions(invert_rigid(q.extrinsics), q.intrinsics, hw)
            rgbd_a, _ = model.render(rays, out_a.states)
            rgbd_b, _ = model.render(rays, out_b.states)
            rgb_moves.append(float((rgbd_a[..., :3] - rgbd_b[..., :3]).abs().mean()))
            nvs_depth_moves.append(_rel(rgbd_a[..., 3], rgbd_b[..., 3]))
            rgb_spread.append(float(rgbd_a[..., :3].std(dim=(2, 3)).mean()))
    mean = statistics.fmean
    return {
        "checkpoint": str(path),
        "scenes": scenes,
        "views": views,
        "depth_change_when_other_frames_swapped": mean(depth_moves),
        "depth_change_after_median_scaling": mean(shape_moves),
        "pose_encoding_change_when_other_frames_swapped": mean(pose_moves),
        "novel_rgb_change_between_two_scene_states": mean(rgb_moves) if rgb_moves else None,
        "novel_depth_change_between_two_scene_states": mean(nvs_depth_moves) if rgb_moves else None,
        "novel_rgb_std_within_image": mean(rgb_spread) if rgb_moves else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="*", default=[str(BUNDLED_MODEL)])
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        print(json.dumps(probe(path, args.scenes), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
