"""`zipmap export` and `zipmap render`: a saved scene to the formats people use, and to novel
views along a camera path."""

from __future__ import annotations

import argparse
import sys

from ..options import (
    DEFAULT_ORBIT_VIEWS,
    EXPORT_FORMATS,
    MAX_PATH_VIEWS,
    MIN_PATH_WIDTH,
    NOVEL_VIEW_SOURCES,
    VARIANTS,
    number,
    positive_int,
    render_size,
)
from .common import CHECKPOINT_HELP, reconstructor
from .terminal import StageBar


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """export's and render's options."""
    x = sub.add_parser("export", help="export a .zipmap scene to PLY, GLB, a mesh, COLMAP or nerfstudio")
    x.add_argument("scene", help="a .zipmap scene file")
    x.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    x.add_argument("-o", "--output", required=True, help="file (ply, glb, mesh: .ply/.obj/.glb) or folder (colmap, nerfstudio)")
    x.add_argument("--percentile", type=number(float, 0, 100), help="drop points below this confidence percentile")
    x.add_argument(
        "--voxel-size", type=number(float, 0, 1e9, lo_open=True), help="mesh voxel size in scene units (default: from the scene's extent)"
    )
    x.add_argument("--text", action="store_true", help="COLMAP text files instead of binary")
    x.add_argument("-q", "--quiet", action="store_true")
    x.set_defaults(func=cmd_export)
    rn = sub.add_parser("render", help="render novel views of a .zipmap scene: from its scene state, its photos or its points")
    rn.add_argument("scene")
    src = rn.add_mutually_exclusive_group()
    src.add_argument("--c2w", help="JSON with camera-to-world matrices (scene frame, OpenCV axes) and optional intrinsics")
    src.add_argument(
        "--orbit",
        type=positive_int(MAX_PATH_VIEWS),
        help=f"render an orbit of N views around the scene (default: {DEFAULT_ORBIT_VIEWS}, a full turn)",
    )
    rn.add_argument("-o", "--output", required=True, help="output folder")
    rn.add_argument(
        "--source",
        choices=NOVEL_VIEW_SOURCES,
        help="state: the scene state queried (loads the model); photos: the input photos warped by their dense depth; "
        "points: the points splatted (default: the best the scene has, photos once the dense stage ran)",
    )
    rn.add_argument("--checkpoint", help="the model that made the scene: " + CHECKPOINT_HELP)
    rn.add_argument("--variant", choices=VARIANTS)
    rn.add_argument("--device", default="auto")
    rn.add_argument(
        "--size",
        type=render_size,
        help=f"WxH (default: an orbit at the scene's aspect, at least {MIN_PATH_WIDTH} px wide; a --c2w file at the scene's size)",
    )
    rn.add_argument(
        "--fov",
        type=number(float, 1, 170),
        help="vertical field of view in degrees (default: the scene's own; a camera file's intrinsics win)",
    )
    rn.add_argument("--fps", type=number(float, 0, 240, lo_open=True), default=24.0)
    rn.add_argument("-q", "--quiet", action="store_true")
    rn.set_defaults(func=cmd_render)


def cmd_export(args: argparse.Namespace) -> int:
    from ..io.exporters import export
    from ..io.reconstruction import Reconstruction

    recon = Reconstruction.load(args.scene)
    options: dict = {}
    if args.percentile is not None:
        options["percentile"] = args.percentile
    if args.format == "mesh" and args.voxel_size:
        options["voxel_size"] = args.voxel_size
    if args.format == "colmap" and args.text:
        options["text"] = True
    bar = StageBar(args.quiet)
    try:
        target = export(recon, args.format, args.output, progress=bar, **options)
    finally:
        bar.close()
    print(f"exported {args.format}: {target}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from ..io.reconstruction import Reconstruction
    from ..model.geometry import intrinsics_from_fov
    from ..pipeline.camera_path import orbit_path, read_poses, render_path, watchable_size
    from ..resources import BUNDLED_MODEL

    recon = Reconstruction.load(args.scene)
    rec = None
    if needs_model(recon, args.source) and (args.checkpoint or BUNDLED_MODEL.exists()):
        rec = reconstructor(args, notice=True)
        if not rec.model.can_render and args.source is None:
            print(f"{rec.description} has no novel-view head: rendering from the photos or points instead", file=sys.stderr)
    # an orbit is sized to watch; a camera file's cameras (and intrinsics) are the scene's own size
    w, h = args.size or (watchable_size(recon.image_hw) if not args.c2w else recon.image_hw)[::-1]
    k = intrinsics_from_fov(args.fov or recon.field_of_view(), (h, w)).numpy()
    if args.c2w:
        poses, k_file = read_poses(args.c2w)
        k = k_file if k_file is not None else k
    else:
        poses = orbit_path(recon, args.orbit or DEFAULT_ORBIT_VIEWS)
    bar = StageBar(args.quiet)
    try:
        folder = render_path(rec, recon, poses, k, (h, w), args.output, fps=args.fps, progress=bar, source=args.source)
    finally:
        bar.close()
    print(f"rendered {len(poses)} views to {folder} (frames/, path.mp4, path.json)")
    return 0


def needs_model(recon, source: str | None) -> bool:
    """Whether rendering `recon` from `source` (None: its best) reads a model: only a query of
    its scene state does."""
    return source == "state" or (source is None and recon.state is not None and recon.dense_points is None)
