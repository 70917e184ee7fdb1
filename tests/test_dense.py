"""The dense stage and the photo renderer on generated rooms with exact geometry: depth accuracy
and coverage, the consistency check, the prior's fill, the fused cloud, held-out renders, that
held-out photos are never read, and progress and cancel."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from zipmap_core.cancel import Cancelled, CancelToken
from zipmap_core.dense import PRIOR, STEREO, dense_depth, heldout_evaluation, heldout_renders, render_from_photos
from zipmap_core.dense.cameras import unproject
from zipmap_core.dense.consistency import consistent_counts
from zipmap_core.dense.depth import PARTNERS
from zipmap_core.dense.fusion import frame_points
from zipmap_core.dense.heldout import held_out
from zipmap_core.dense.views import CANDIDATES, Neighbourhood, depth_ranges
from zipmap_core.errors import InputError
from zipmap_core.io.tracks import Tracks
from zipmap_core.sfm.test_scenes import textured_room, turned

VIEWS, HW = 12, (240, 320)


@pytest.fixture(scope="module")
def room():
    return textured_room(VIEWS, seed=0, hw=HW)


@pytest.fixture(scope="module")
def room_dense(room):
    return dense_depth(room.images, room.extrinsics, room.intrinsics)


def absrel(pred: np.ndarray, truth: np.ndarray, scale: float = 1.0) -> float:
    ok = pred > 0
    return float(np.mean(np.abs(scale * pred[ok] - truth[ok]) / truth[ok]))


def test_true_cameras_give_accurate_dense_depth(room, room_dense):
    returned = float(np.mean(room_dense.depth > 0))
    assert returned >= 0.7, returned
    assert absrel(room_dense.depth, room.depth) <= 0.05
    assert room_dense.depth.dtype == np.float32 and room_dense.depth.shape == room.depth.shape
    assert np.array_equal(room_dense.source == STEREO, room_dense.depth > 0)  # no prior: every depth is stereo's
    assert ((room_dense.confidence > 0) == (room_dense.depth > 0)).all() and room_dense.confidence.max() <= 1


def test_cameras_off_by_a_scale_and_a_little_rotation_need_one_global_scale(room):
    start = turned(room, (0.05, 0.1), seed=1)
    ext = start.extrinsics.copy()
    ext[:, :, 3] *= 0.37  # a reconstruction's arbitrary unit, as COLMAP's
    out = dense_depth(start.images, ext, start.intrinsics)
    ok = out.depth > 0
    assert ok.mean() >= 0.7
    scale = float(np.median(room.depth[ok] / out.depth[ok]))
    assert scale == pytest.approx(1 / 0.37, rel=0.02)
    assert absrel(out.depth, room.depth, scale) <= 0.05


def test_partners_lie_on_both_sides_and_ranges_hold_the_true_depth(room):
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, HW[0], 300), rng.integers(0, HW[1], 300)
    xyz = np.concatenate([unproject(room.depth[i], room.intrinsics[i], room.extrinsics[i])[rows, cols] for i in range(VIEWS)])
    obs = np.stack((np.arange(len(xyz)), np.repeat(np.arange(VIEWS), 300)), 1).astype(np.int32)
    pixels = np.tile(np.stack((cols + 0.5, rows + 0.5), 1), (VIEWS, 1)).astype(np.float32)
    tracks = Tracks(xyz.astype(np.float32), np.zeros((len(xyz), 3), np.uint8), np.zeros(len(xyz), np.float32), obs, pixels)
    ranges = depth_ranges(room.extrinsics, tracks, None, VIEWS)
    for i, (near, far) in enumerate(ranges):
        assert near < room.depth[i].min() and far > room.depth[i].max() and far / near < 5
    hood = Neighbourhood(room.extrinsics, room.intrinsics, HW, ranges, tracks)
    partners = hood.partners(6, PARTNERS)
    assert 0 < len(partners) <= PARTNERS and 6 not in partners
    assert (partners < 6).any() and (partners > 6).any()
    long = textured_room(80, seed=0, hw=(12, 16))  # many frames: each still weighs a bounded number of others
    sweep = Neighbourhood(long.extrinsics, long.intrinsics, (12, 16), depth_ranges(long.extrinsics, None, long.depth, 80))
    assert max(len(sweep.measured(i)[0]) for i in range(80)) <= 3 * (CANDIDATES + 1)


def test_consistency_check_drops_a_wrong_frame(room):
    depth = room.depth.copy()
    depth[5] *= 1.15  # one frame's depth 15 % off
    counts = [consistent_counts(depth, room.extrinsics.astype(float), room.intrinsics.astype(float), i, [i - 1, i + 1]) for i in (4, 5, 6)]
    assert np.mean(counts[1] > 0) < 0.02  # the wrong frame agrees with neither neighbour
    assert np.mean(counts[0] > 0) > 0.8 and np.mean(counts[2] > 0) > 0.8  # its neighbours still have the other


def test_a_frame_whose_photo_does_not_match_loses_its_depth(room):
    images = room.images.copy()
    images[5] = textured_room(VIEWS, seed=7, hw=HW).images[5]  # same geometry, another wallpaper: stereo matches noise
    out = dense_depth(images, room.extrinsics, room.intrinsics)
    kept = out.depth[5] > 0
    assert kept.mean() < 0.1, kept.mean()
    others = [i for i in range(VIEWS) if abs(i - 5) > 2]
    assert np.mean(out.depth[others] > 0) > 0.7
    assert absrel(out.depth[others], room.depth[others]) <= 0.05


def test_prior_fills_a_textureless_region_and_the_source_map_says_so(room):
    flat = room.depth > np.percentile(room.depth, 80)  # the farthest fifth of every frame, painted flat grey
    images = room.images.copy()
    images[flat] = 128
    noise = 1 + 0.02 * np.random.default_rng(0).standard_normal(room.depth.shape).astype(np.float32)
    prior = (room.depth * noise, np.ones_like(room.depth))
    without = dense_depth(images, room.extrinsics, room.intrinsics)
    assert np.mean(without.depth[flat] > 0) < 0.1  # stereo cannot match there
    out = dense_depth(images, room.extrinsics, room.intrinsics, prior=prior)
    assert np.mean(out.source[flat] == PRIOR) > 0.9
    assert np.mean(out.source[~flat] == STEREO) > 0.7
    assert absrel(np.where(flat, out.depth, 0), room.depth) < 0.05
    assert out.confidence[out.source == PRIOR].max() < out.confidence[out.source == STEREO].min()  # the prior ranks below stereo
    assert out.stats["prior_share"] == pytest.approx(np.mean(out.source == PRIOR))


def test_fused_cloud_holds_each_surface_point_once(room, room_dense):
    out = room_dense
    naive = np.concatenate([frame_points(out.depth[i], room.intrinsics[i], room.extrinsics[i])[0] for i in range(VIEWS)])
    footprint = float(np.median(out.depth[out.depth > 0]) / room.intrinsics[0, 0, 0])  # a pixel's size on the walls

    def near_twins(points: np.ndarray) -> float:
        return float(np.mean(cKDTree(points).query(points, k=2)[0][:, 1] < 0.25 * footprint))

    assert near_twins(naive) > 0.05
    assert near_twins(out.xyz.astype(np.float64)) < 0.005
    assert len(out.xyz) < 0.3 * len(naive)
    assert np.mean(cKDTree(out.xyz).query(naive)[0] < 2 * footprint) > 0.9  # nothing the frames saw is lost
    assert out.rgb.dtype == np.uint8 and out.rgb.shape == out.xyz.shape


def test_render_of_held_out_cameras_beats_the_nearest_frame(room):
    result = heldout_evaluation(room)
    assert result["held_out"] == [3, 7, 11]
    summary = result["summary"]
    assert summary["photos"]["psnr"] > summary["nearest_frame"]["psnr"] + 3
    assert summary["photos"]["ssim"] > summary["nearest_frame"]["ssim"] + 0.2
    assert summary["photos"]["psnr"] > summary["mean_colour"]["psnr"] + 3
    assert len(result["frames"]) == 3 and all("photos" in f for f in result["frames"])


def test_held_out_photos_are_never_read(room):
    held = held_out(VIEWS)
    before = heldout_renders(room, held)["photos"]
    changed = room.images.copy()
    changed[held] = np.random.default_rng(3).integers(0, 256, changed[held].shape, dtype=np.uint8)
    altered = replace(room, images=changed, points_cam=None, points_world=None)
    after = heldout_renders(altered, held)["photos"]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_renderer_reads_only_its_sources(room, room_dense):
    sources = [0, 2, 4, 6]
    pose, k = room.cam_to_world[3:4], room.intrinsics[3:4]
    args = (room_dense.depth, room_dense.confidence, room.extrinsics, room.intrinsics, pose, k, HW)
    first = render_from_photos(room.images, *args, sources=sources)
    images = room.images.copy()
    images[[1, 3, 5, 7, 8, 9, 10, 11]] = 0
    again = render_from_photos(images, *args, sources=sources)
    assert np.array_equal(first.rgb, again.rgb) and np.array_equal(first.depth, again.depth)
    assert first.rgb.shape == (1, *HW, 3) and first.rgb.dtype == np.float32
    assert 0 <= first.rgb.min() and first.rgb.max() <= 1
    assert np.mean(first.depth > 0) > 0.8 and absrel(first.depth[0], room.depth[3]) < 0.05
    draft = render_from_photos(room.images, *args, sources=sources, draft=True)
    assert draft.rgb.shape == first.rgb.shape and float(np.abs(draft.rgb - first.rgb).mean()) < 0.15


def test_progress_reaches_every_frame_and_cancel_stops_the_stage():
    small = textured_room(4, seed=2, hw=(120, 160))
    seen = []
    dense_depth(small.images, small.extrinsics, small.intrinsics, progress=lambda *a: seen.append(a))
    assert seen == [("dense", i + 1, 4) for i in range(4)]
    token, calls = CancelToken(), []

    def cancel_after_two(stage: str, done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        dense_depth(small.images, small.extrinsics, small.intrinsics, progress=cancel_after_two, cancel=token)
    assert calls == [1, 2]


def test_bad_inputs_are_refused_in_one_line(room):
    with pytest.raises(InputError):
        dense_depth(room.images[:1], room.extrinsics[:1], room.intrinsics[:1])
    with pytest.raises(InputError):
        dense_depth(room.images, room.extrinsics[:3], room.intrinsics)
    with pytest.raises(InputError):
        dense_depth(room.images, room.extrinsics, room.intrinsics, prior=(room.depth[:2], room.depth[:2]))
    with pytest.raises(InputError):
        render_from_photos(
            room.images,
            np.zeros(room.depth.shape, np.float32),
            room.depth,
            room.extrinsics,
            room.intrinsics,
            room.cam_to_world[:1],
            room.intrinsics[:1],
            HW,
        )
    with pytest.raises(InputError):
        held_out(VIEWS, every=4, offset=4)
