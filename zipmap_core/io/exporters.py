"""Exports of a `Reconstruction` for the tools people use: PLY point clouds, GLB scenes, TSDF
meshes (PLY / OBJ / GLB), COLMAP sparse models and nerfstudio `transforms.json`.

Every file goes through `atomic_path`, so a full disk, an unwritable folder or a cancel never
leaves a half-written file; folder exports are assembled in a temporary sibling folder and renamed
into place only when complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import trimesh

from ..cancel import CancelToken, Progress, reporter
from ..errors import InputError
from ..model.frusta import frustum_corners, frustum_segments
from ..options import EXPORT_FORMATS
from .atomic import atomic_folder, atomic_path
from .colmap_model import FrameEntry, ModelReadError, build_model, pinhole_camera, read_bounded, tracks_keypoints
from .files import picture_stem
from .preprocess import unit_bytes_np
from .reconstruction import Reconstruction
from .tracks import Tracks

MAX_VOXELS = 400**3  # a mesh's TSDF grid holds at most this many voxels (about 1.5 GB of float32 working arrays)


def _noop(stage: str, done: int, total: int) -> None:
    return None


# ---- point clouds and scenes ------------------------------------------------------------------------
def scene_points(recon: Reconstruction, percentile: float, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scene's points above a confidence percentile (`Reconstruction.point_cloud`); a scene
    with none (no depth in front of any camera) is said, not written as an empty `what`."""
    pts, cols, conf = recon.point_cloud(percentile)
    if not len(pts):
        raise InputError(f"this scene has no point in front of its cameras (no depth above zero): there is nothing to write as {what}")
    return pts, cols, conf


def export_ply(recon: Reconstruction, path: str | Path, percentile: float = 0.0, progress: Progress = _noop) -> Path:
    """Binary PLY: x y z, red green blue, confidence, above a confidence percentile."""
    pts, cols, conf = scene_points(recon, percentile, "a PLY point cloud")
    progress("ply", 1, 1)
    return _write_ply(path, pts, cols, conf)


def _write_ply(path: str | Path, pts: np.ndarray, cols: np.ndarray, conf: np.ndarray) -> Path:
    rgba = np.concatenate((cols, np.full((len(cols), 1), 255, np.uint8)), 1)
    # a face-less Trimesh is what trimesh's PLY writer takes extra per-vertex properties from
    cloud = trimesh.Trimesh(pts.astype(np.float64), np.zeros((0, 3), np.int64), vertex_colors=rgba, process=False)
    # a missing (NaN) confidence is written as 0, the lowest: no file of ours holds a non-finite number
    cloud.vertex_attributes["confidence"] = np.nan_to_num(conf.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    with atomic_path(path) as tmp:
        data = trimesh.exchange.ply.export_ply(cloud, encoding="binary", include_attributes=True)
        tmp.write_bytes(data)
    return Path(path)


def export_glb(recon: Reconstruction, path: str | Path, percentile: float = 0.0, progress: Progress = _noop) -> Path:
    """A glTF binary with the coloured points and every camera's frustum as lines."""
    pts, cols, _ = scene_points(recon, percentile, "a GLB scene")
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.PointCloud(pts, colors=cols), node_name="points")
    size = 0.15 * recon.median_depth()
    c2w = recon.cam_to_world
    for i in range(recon.num_frames):
        segs = frustum_segments(frustum_corners(c2w[i], recon.intrinsics[i], recon.image_hw, size)).astype(np.float64)
        path3d = trimesh.load_path(segs)
        path3d.colors = np.tile([255, 140, 0, 255], (len(path3d.entities), 1))
        scene.add_geometry(path3d, node_name=f"camera_{i:03d}")
    progress("glb", 1, 1)
    with atomic_path(path) as tmp:
        tmp.write_bytes(trimesh.exchange.gltf.export_glb(scene))
    return Path(path)


# ---- TSDF mesh -----------------------------------------------------------------------------------------
def fuse_tsdf(
    recon: Reconstruction,
    voxel_size: float | None = None,
    percentile: float = 20.0,
    resolution: int = 160,
    progress: Progress = _noop,
) -> trimesh.Trimesh:
    """Confidence-masked TSDF fusion of the depth maps (vectorised torch), then marching cubes
    (scikit-image). The voxel size defaults to the bounding box of the confident points divided by
    `resolution`; the truncation band is 4 voxels."""
    from skimage.measure import marching_cubes

    pts, _, _ = recon.point_cloud(percentile)
    if len(pts) < 100:
        raise InputError("too few confident points to build a mesh; lower the confidence threshold")
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    pad = 0.05 * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    voxel = float(voxel_size or (hi - lo).max() / resolution)
    sides = (hi - lo) / voxel + 1  # counted as floats: a tiny voxel must not overflow a whole number
    if not np.isfinite(sides).all() or float(np.log(sides).sum()) > np.log(MAX_VOXELS):  # logs: no overflow
        least = float(np.cbrt(np.prod(hi - lo) / MAX_VOXELS)) or (hi - lo).max() / resolution
        raise InputError(
            f"voxel size {voxel:.4g} cuts this scene ({' x '.join(f'{v:.3g}' for v in hi - lo)} scene units) into more than "
            f"{MAX_VOXELS:,} voxels; choose a voxel size of at least {least:.3g}"
        )
    dims = np.ceil(sides).astype(int)
    trunc = 4 * voxel
    grid = [torch.arange(n, dtype=torch.float32) * voxel + float(o) for n, o in zip(dims, lo)]
    centres = torch.stack(torch.meshgrid(*grid, indexing="ij"), -1).reshape(-1, 3)
    tsdf = torch.zeros(len(centres))
    weight = torch.zeros(len(centres))
    colour = torch.zeros(len(centres), 3)
    kept = recon.confidence_mask(percentile)
    h, w = recon.image_hw
    for i in range(recon.num_frames):
        ext = torch.as_tensor(recon.extrinsics[i], dtype=torch.float32)
        k = torch.as_tensor(recon.intrinsics[i], dtype=torch.float32)
        cam = centres @ ext[:, :3].T + ext[:, 3]
        z = cam[:, 2]
        front = z > 1e-6
        u = torch.floor(cam[:, 0] / z.clamp(min=1e-6) * k[0, 0] + k[0, 2]).long()
        v = torch.floor(cam[:, 1] / z.clamp(min=1e-6) * k[1, 1] + k[1, 2]).long()
        inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        idx = torch.nonzero(inside)[:, 0]
        pix = v[idx] * w + u[idx]
        depth = torch.as_tensor(recon.depth[i].reshape(-1))[pix]
        conf_ok = torch.as_tensor(kept[i].reshape(-1))[pix]
        sdf = depth - z[idx]
        ok = conf_ok & torch.isfinite(depth) & (depth > 0) & (sdf > -trunc)
        idx, pix, sdf = idx[ok], pix[ok], sdf[ok]
        val = (sdf / trunc).clamp(max=1.0)
        w_old = weight[idx]
        tsdf[idx] = (tsdf[idx] * w_old + val) / (w_old + 1)
        rgb = torch.as_tensor(recon.images[i].reshape(-1, 3), dtype=torch.float32)[pix] / 255.0
        near = sdf.abs() < trunc
        cidx = idx[near]
        colour[cidx] = (colour[cidx] * w_old[near, None] + rgb[near]) / (w_old[near, None] + 1)
        weight[idx] = w_old + 1
        progress("fuse", i + 1, recon.num_frames)
    vol = tsdf.reshape(*dims).numpy()
    observed = weight.reshape(*dims).numpy() > 0
    if not (vol[observed] < 0).any() or not (vol[observed] > 0).any():
        raise InputError("the fused volume has no surface; try another voxel size or confidence threshold")
    verts, faces, _normals, _ = marching_cubes(vol, level=0.0, spacing=(voxel,) * 3, mask=observed)
    verts = verts + lo
    vox = np.clip(np.round((verts - lo) / voxel).astype(int), 0, dims - 1)
    flat = np.ravel_multi_index(vox.T, dims)
    vcol = unit_bytes_np(colour.numpy()[flat])
    mesh = trimesh.Trimesh(verts, faces[:, ::-1], vertex_colors=vcol, process=False)
    mesh.metadata["voxel_size"] = voxel
    return mesh


def export_mesh(
    recon: Reconstruction,
    path: str | Path,
    voxel_size: float | None = None,
    percentile: float = 20.0,
    progress: Progress = _noop,
) -> Path:
    """TSDF mesh written as PLY, OBJ or GLB by the file's suffix."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".") or "ply"
    if kind not in ("ply", "obj", "glb"):
        raise InputError(f"mesh files can be .ply, .obj or .glb, not .{kind}")
    if recon.is_sparse:
        raise InputError("a mesh is fused from dense depth; this scene has COLMAP's sparse points only (export ply, colmap or nerfstudio)")
    mesh = fuse_tsdf(recon, voxel_size, percentile, progress=progress)
    data = mesh.export(file_type=kind)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# ---- camera formats ------------------------------------------------------------------------------------
def image_file_names(recon: Reconstruction) -> list[str]:
    """Unique PNG names for the reconstruction's frames (`files.picture_stem`; video frames named
    alike and names with nothing left get a number)."""
    names, seen = [], set()
    for i, name in enumerate(recon.names):
        stem = picture_stem(name) or f"frame_{i:04d}"
        candidate = f"{stem}.png"
        if candidate in seen:
            candidate = f"{stem}_{i:04d}.png"
        seen.add(candidate)
        names.append(candidate)
    return names


def _write_images(recon: Reconstruction, folder: Path, progress: Progress) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = image_file_names(recon)
    for i, name in enumerate(names):
        Image.fromarray(recon.images[i]).save(folder / name)
        progress("images", i + 1, len(names))
    return names


def export_colmap(
    recon: Reconstruction,
    folder: str | Path,
    percentile: float = 20.0,
    max_points: int = 200_000,
    text: bool = False,
    progress: Progress = _noop,
) -> Path:
    """COLMAP sparse model (`sparse/0/` in binary, or text) written by pycolmap, with the frames in
    `images/` at the scene's resolution, and the dense points as `fused.ply` when the dense stage
    ran. A scene COLMAP made or refined carries its real tracks (each point with every pixel it
    was seen at); otherwise each of up to `max_points` confident depth points has a
    one-observation track to its pixel."""
    with atomic_folder(folder) as tmp:
        names = _write_images(recon, tmp / "images", progress)
        tracks = recon.tracks if recon.tracks is not None else depth_tracks(recon, percentile, max_points)
        keypoints, _ = tracks_keypoints(tracks, recon.num_frames)
        cameras = [pinhole_camera(recon.intrinsics[i], recon.image_hw, i + 1) for i in range(recon.num_frames)]
        frames = [FrameEntry(names[i], i + 1, i + 1, recon.extrinsics[i], keypoints[i]) for i in range(recon.num_frames)]
        model = build_model(cameras, frames, tracks)
        progress("colmap", 1, 1)
        sparse = tmp / "sparse" / "0"
        sparse.mkdir(parents=True)
        (model.write_text if text else model.write_binary)(str(sparse))
        _verify_colmap(model, sparse)
        if recon.dense_points is not None:  # beside the sparse model, as COLMAP's dense workspace holds it
            d = recon.dense_points
            _write_ply(tmp / "fused.ply", d.xyz, d.rgb, d.confidence)
    return Path(folder)


def depth_tracks(recon: Reconstruction, percentile: float, max_points: int) -> Tracks:
    """Up to `max_points` confident depth points, each seen once, at its pixel's centre."""
    rng = np.random.default_rng(0)
    kept = recon.confidence_mask(percentile)
    per_frame = max(1, max_points // recon.num_frames)
    picks = []
    for i in range(recon.num_frames):
        vs, us = np.nonzero(kept[i])
        pick = rng.choice(len(vs), size=min(per_frame, len(vs)), replace=False) if len(vs) else np.zeros(0, int)
        picks.append((np.full(len(pick), i), vs[pick], us[pick]))
    f, v, u = (np.concatenate(parts).astype(int) for parts in zip(*picks))
    n = len(f)
    return Tracks(
        recon.points_world[f, v, u].astype(np.float32),
        recon.images[f, v, u],
        np.zeros(n, np.float32),
        np.stack((np.arange(n), f), 1).astype(np.int32),
        np.stack((u + 0.5, v + 0.5), 1).astype(np.float32),
    )


def _verify_colmap(written, sparse: Path) -> None:
    """pycolmap's writers do not report write errors (a full disk leaves a truncated or 0-byte
    points3D.bin): the model is read back (memory-capped, `read_bounded`) and compared with what
    was written before it replaces anything."""
    try:
        counts = read_bounded(sparse)["counts"]
    except ModelReadError as exc:
        raise OSError(f"the COLMAP model does not read back ({exc.detail}; the disk may be full)") from None
    if counts != [written.num_cameras(), written.num_images(), written.num_points3D()]:
        raise OSError("the COLMAP model does not read back whole (the disk may be full)")


OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def export_nerfstudio(recon: Reconstruction, folder: str | Path, percentile: float = 20.0, progress: Progress = _noop) -> Path:
    """nerfstudio's `transforms.json` (camera-to-world in OpenGL axes, per-frame intrinsics) with
    the images beside it and the confident points as `sparse_pc.ply`, as ns-process-data writes."""
    with atomic_folder(folder) as tmp:
        names = _write_images(recon, tmp / "images", progress)
        h, w = recon.image_hw
        frames = []
        c2w = recon.cam_to_world
        for i, name in enumerate(names):
            m = np.eye(4)
            m[:3, :4] = c2w[i]
            k = recon.intrinsics[i]
            frames.append(
                {
                    "file_path": f"images/{name}",
                    "transform_matrix": (m @ OPENCV_TO_OPENGL).tolist(),
                    "fl_x": float(k[0, 0]),
                    "fl_y": float(k[1, 1]),
                    "cx": float(k[0, 2]),
                    "cy": float(k[1, 2]),
                    "w": w,
                    "h": h,
                }
            )
        meta = {
            "camera_model": "OPENCV",
            "w": w,
            "h": h,
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "frames": frames,
            "ply_file_path": "sparse_pc.ply",
        }
        (tmp / "transforms.json").write_text(json.dumps(meta, indent=2))
        if recon.tracks is not None and recon.dense_points is None:  # COLMAP's points, as ns-process-data writes them
            _write_ply(tmp / "sparse_pc.ply", recon.tracks.xyz, recon.tracks.rgb, recon.tracks.track_length.astype(np.float32))
        elif len(recon.point_cloud(percentile)[0]):  # the dense points (or the depth's), the better start for a splatting trainer
            export_ply(recon, tmp / "sparse_pc.ply", percentile)
        else:  # cameras alone: nerfstudio starts from random points
            meta.pop("ply_file_path")
            (tmp / "transforms.json").write_text(json.dumps(meta, indent=2))
    return Path(folder)


def export(
    recon: Reconstruction, fmt: str, path: str | Path, progress: Progress = _noop, cancel: CancelToken | None = None, **options
) -> Path:
    """Dispatch by format name (the CLI's and the app's single entry point). A `cancel` token is
    checked at every progress step; cancelling leaves nothing behind."""
    progress = reporter(progress, cancel or CancelToken())

    writers = {"ply": export_ply, "glb": export_glb, "mesh": export_mesh, "colmap": export_colmap, "nerfstudio": export_nerfstudio}
    check_formats([fmt])
    return writers[fmt](recon, path, progress=progress, **options)


def check_formats(formats: list[str]) -> list[str]:
    """The formats, or a ValueError naming the unknown ones (checked before any work is done)."""
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise InputError(f"unknown export format(s) {', '.join(bad)}; choose from {', '.join(EXPORT_FORMATS)}")
    return formats
