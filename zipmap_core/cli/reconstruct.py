"""`zipmap reconstruct`: photos, folders or videos to a scene and its exports, in one process or
split across several (`--nproc`, torchrun)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..options import (
    ENGINES,
    EXPORT_FORMATS,
    EXPORT_NAMES,
    MAX_FRAMES,
    MAX_PROCESSES,
    MAX_RESOLUTION,
    POINT_SOURCES,
    VARIANTS,
    add_video_sampling,
    number,
    positive_int,
    resolution,
)
from .common import CHECKPOINT_HELP, add_numerics, reconstructor
from .terminal import StageBar, report_failure

if TYPE_CHECKING:
    from ..io.atomic import Publication
    from ..io.reconstruction import Reconstruction
    from ..pipeline.distributed import Launch
    from ..pipeline.engine import Engine
    from ..pipeline.reconstruct_options import ReconstructOptions


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """reconstruct's options."""
    r = sub.add_parser("reconstruct", help="reconstruct a scene from images, folders or videos")
    r.add_argument("inputs", nargs="+", help="image files, folders or videos")
    r.add_argument("-o", "--output", required=True, help="output folder (receives scene.zipmap)")
    r.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="auto (default): the network with the checkpoint you name or the official weights when they are on this machine, "
        "else COLMAP with dense depth from the photos, else the bundled model; zipmap: the network; "
        "colmap: COLMAP's structure from motion alone",
    )
    r.add_argument(
        "--refine",
        action="store_true",
        help="bundle-adjust ZipMap's cameras with COLMAP (features matched between the frames ZipMap says overlap) "
        "and fit the depth to the refined cameras",
    )
    r.add_argument(
        "--intrinsics",
        type=intrinsics_option,
        help="known intrinsics of the original pictures: fx,fy,cx,cy in pixels, a JSON file with those keys, "
        "or COLMAP's cameras.txt; used to unproject depth and held fixed when refining",
    )
    r.add_argument(
        "--poses",
        help="known cameras: a COLMAP model folder (cameras and images, text or binary) or a nerfstudio transforms.json; "
        "the classical engine triangulates with them instead of registering, the network's scene is brought onto them; "
        "the scene keeps their frame and units",
    )
    r.add_argument(
        "--masks",
        help="a folder with a mask picture for each input (COLMAP's convention: black = ignore; a.jpg's mask is a.jpg.png or a.png, "
        "a video's one mask is named after it): no features, no depth and no part in novel views there",
    )
    r.add_argument(
        "--dense",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dense depth from the photos (multi-view stereo on the CPU) and a fused point cloud; "
        "default: on where COLMAP measured the cameras or they were given (--engine colmap, --refine, --poses with COLMAP)",
    )
    r.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    r.add_argument("--variant", choices=VARIANTS, help="force the official variant")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    r.add_argument(
        "--resolution", type=resolution, help=f"model image width, a multiple of 14 up to {MAX_RESOLUTION} (default: the model's)"
    )
    r.add_argument("--mode", choices=("crop", "pad"), default="crop")
    r.add_argument("--max-frames", type=positive_int(MAX_FRAMES), help="use at most this many frames, evenly spaced")
    add_video_sampling(r)
    r.add_argument("--window-size", type=number(int, 0, MAX_FRAMES), help="TTT window in frames (0 = bidirectional)")
    r.add_argument(
        "--nproc",
        type=positive_int(MAX_PROCESSES),
        default=1,
        help="split the reconstruction across N local processes (gloo on CPU, NCCL with one GPU each); "
        "under torchrun the split follows the launcher's processes",
    )
    r.add_argument(
        "--dist-timeout",
        type=number(float, 0, 1e6, lo_open=True),
        default=300.0,
        help="seconds a split run waits for a silent process before it stops with an error",
    )
    r.add_argument("--no-state", action="store_true", help="do not keep the scene state")
    r.add_argument(
        "--points-from",
        choices=POINT_SOURCES,
        default="depth",
        help="world points from unprojected depth (default) or the point head (runs one more dense head)",
    )
    add_numerics(r)
    r.add_argument("--export", help=f"also export these formats into the output folder ({','.join(EXPORT_FORMATS)})")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_reconstruct)


def intrinsics_option(text: str):
    """--intrinsics parsed (and its file read) when the options are, so a bad one is said first."""
    from ..io.intrinsics import parse_intrinsics

    try:
        return parse_intrinsics(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def reconstruct_options(args: argparse.Namespace) -> ReconstructOptions:
    """The run's options from the command line, checked once (the app builds them the same way)."""
    from ..io.inputs import VideoSampling
    from ..io.known_poses import read_known_poses
    from ..io.masks import read_masks
    from ..pipeline.reconstruct_options import NetworkOptions, ReconstructOptions

    network = NetworkOptions(
        args.window_size, None if not getattr(args, "no_state", False) else False, getattr(args, "points_from", "depth")
    )
    return ReconstructOptions(
        mode=args.mode,
        resolution=args.resolution,
        max_frames=args.max_frames,
        sampling=VideoSampling(fps=args.fps, max_frames=args.video_frames),
        intrinsics=getattr(args, "intrinsics", None),
        poses=read_known_poses(args.poses) if getattr(args, "poses", None) else None,
        masks=read_masks(args.masks) if getattr(args, "masks", None) else None,
        dense=getattr(args, "dense", None),
        network=network,
    )


ONE_PROCESS = {"--intrinsics": "intrinsics", "--poses": "poses", "--masks": "masks", "--dense": "dense"}  # options a split run cannot take


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from ..engines import engine_name, make_engine, reconstruct_scene
    from ..io.atomic import Publication
    from ..io.exporters import check_formats
    from ..pipeline.distributed import Launch

    formats = check_formats([f.strip() for f in (args.export or "").split(",") if f.strip()])
    check_inputs_exist(args.inputs)  # before a model takes seconds to load
    options = reconstruct_options(args)
    launch = Launch.from_env()
    notice = launch is None or launch.rank == 0  # the demonstration notice, said once
    engine = make_engine(
        engine_name(args.engine, args.refine), lambda spec: reconstructor(args, notice=notice, checkpoint=spec), model=args.checkpoint
    )
    engine.refuse(options)
    if args.nproc > 1 or launch is not None:
        one_process = [flag for flag, given in ONE_PROCESS.items() if getattr(options, given) not in (None, False)]
        if not engine.capabilities.splits or one_process:
            why = f"the {engine.name} engine" + (f" (here: {engine.why})" if engine.why else "")
            raise InputError(
                f"{', '.join(one_process) or why} runs in one process (as do --refine, --intrinsics, --poses, --masks and --dense); "
                "leave out --nproc (and torchrun), or name the network: --engine zipmap"
            )
        if launch is None:
            return _launch_processes(args)
        return _run_as_rank(engine, args, launch, options, formats)
    print(f"model: {engine.describe()}", file=sys.stderr)
    bar = StageBar(args.quiet)
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    # the scene and its exports are staged and published together: a failure or a cancel keeps
    # the previous run's outputs, and a second run into the same folder waits for no one
    with Publication(args.output, output_names(formats)) as pub:
        try:
            recon = reconstruct_scene(engine, args.inputs, options, progress=bar, say=say)
        finally:
            bar.close()
        _write_outputs(recon, formats, pub, bar)
    return _summary(recon, formats, Path(args.output))


def _run_as_rank(engine: Engine, args: argparse.Namespace, launch: Launch, options: ReconstructOptions, formats: list[str]) -> int:
    """One process of a split run (ours or torchrun's), which leaves without the interpreter's
    teardown once its work is done and published, or has failed: gloo's threads can abort a
    process there ("terminate called without an active exception"), which a launcher must take
    for a failure."""
    try:
        code = _reconstruct_as_rank(engine, args, launch, options, formats)
    except BaseException as exc:  # noqa: BLE001 - said as the command line says it, then out at once
        code = report_failure(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def check_inputs_exist(paths: list[str | Path]) -> None:
    """No file among the inputs at all (missing paths, empty folders) is said before any work."""
    from ..io.inputs import InputSet, check_usable, expand_paths

    files, skipped = expand_paths(paths)
    if not files:
        check_usable(InputSet(skipped=skipped))


def output_names(formats: list[str]) -> list[str]:
    """What a reconstruction publishes in its output folder."""
    return ["scene.zipmap"] + [EXPORT_NAMES[f] for f in formats]


def _write_outputs(recon: Reconstruction, formats: list[str], pub: Publication, bar: StageBar) -> None:
    from ..engines import scene_notes
    from ..io.exporters import export
    from ..io.files import one_line

    for note in scene_notes(recon):
        print(note, file=sys.stderr)
    for name, reason in recon.metadata.get("skipped", []):
        print(f"skipped {one_line(name)}: {reason}", file=sys.stderr)
    for note in recon.metadata.get("sampling_notes", []):  # fewer frames than asked: say why
        print(note, file=sys.stderr)
    recon.save(pub.path("scene.zipmap"))
    for fmt in formats:
        export(recon, fmt, pub.path(EXPORT_NAMES[fmt]), progress=bar)
        bar.close()


def _launch_processes(args: argparse.Namespace) -> int:
    """`--nproc N`: the same command in N local processes, one reconstruction split across them."""
    from ..pipeline.distributed import launch_local

    if args.window_size:
        raise InputError("--nproc splits bidirectional reconstructions; the windowed (streaming) order runs in one process")
    argv, skip = [], False
    for item in args.argv:  # the children get the command without --nproc
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            argv.append(item)
    return launch_local(args.nproc, argv, args.dist_timeout)


def _reconstruct_as_rank(engine: Engine, args: argparse.Namespace, launch: Launch, options: ReconstructOptions, formats: list[str]) -> int:
    """One process of a split reconstruction (ours or torchrun's): every rank computes its frames;
    rank 0 gathers, assembles and writes."""
    from ..pipeline.distributed import die_with_parent, init_group, peers_answering

    if os.environ.get("ZIPMAP_LAUNCHED"):
        die_with_parent()
    if options.network.window_size:
        raise InputError("the windowed (streaming) order runs in one process: run without torchrun or --nproc")
    with peers_answering(launch):
        args.device = str(init_group(launch, float(os.environ.get("ZIPMAP_DIST_TIMEOUT", args.dist_timeout))))
        return _split_part(engine, args, launch, options, formats)


def _split_part(engine: Engine, args: argparse.Namespace, launch: Launch, options: ReconstructOptions, formats: list[str]) -> int:
    """This process's part of the split run, once it has joined the group: the engine's network
    (auto's choice too), on the device the group gave this process."""
    import torch.distributed as dist

    from ..io.atomic import Publication
    from ..io.inputs import Preparation, load_inputs
    from ..pipeline.distributed import make_shard, reconstruct_split

    root = launch.rank == 0
    try:
        rec = engine.network()
        assert rec is not None  # an engine that splits runs the network
        if root:
            print(f"model: {rec.description}, split across {launch.world} processes", file=sys.stderr)
        bar = StageBar(args.quiet or not root)
        inputs = load_inputs(
            args.inputs, options.sampling, options.max_frames, prepare=Preparation(options.mode, options.resolution or rec.cfg.img_size)
        )
        shard = make_shard(len(inputs.frames), launch)
        if not root:
            reconstruct_split(rec.runtime, inputs, shard, options, bar)
            return 0
        with Publication(args.output, output_names(formats)) as pub:
            try:
                recon = reconstruct_split(rec.runtime, inputs, shard, options, bar)
            finally:
                bar.close()
            assert recon is not None
            if engine.why is not None:
                recon.metadata["auto"] = engine.why  # as a one-process run records auto's reason
            _write_outputs(recon, formats, pub, bar)
        return _summary(recon, formats, Path(args.output))
    finally:
        dist.destroy_process_group()


def _summary(recon: Reconstruction, formats: list[str], out_dir: Path) -> int:
    for fmt in formats:
        print(f"exported {fmt}: {out_dir / EXPORT_NAMES[fmt]}", file=sys.stderr)
    t = recon.timings
    print(
        f"{recon.num_frames} frames at {recon.image_hw[1]}x{recon.image_hw[0]}: model {t['model_s']:.2f} s "
        f"({t['per_frame_s']:.3f} s/frame), total {t['total_s']:.2f} s -> {out_dir / 'scene.zipmap'}"
    )
    return 0
