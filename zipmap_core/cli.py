"""`zipmap`: the headless command line (reconstruct, convert, download, info)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from .bench_cli import add_bench_parser
from .cancel import Cancelled
from .device import PRECISIONS
from .io.atomic import Publication
from .io.checkpoints import CheckpointError, convert, load_checkpoint
from .io.download import DownloadError, download_official, resolve_checkpoint
from .io.exporters import DEFAULT_NAMES, FORMATS, check_formats, export
from .io.inputs import NoUsableImagesError, Preparation, VideoSampling, load_inputs
from .io.reconstruction import Reconstruction, SceneFileError
from .model.config import OFFICIAL_CONFIGS
from .options import (
    MAX_FRAMES,
    MAX_PATH_VIEWS,
    MAX_PROCESSES,
    MAX_RESOLUTION,
    number,
    positive_int,
    render_size,
    resolution,
)
from .pipeline.assembly import POINT_SOURCES
from .pipeline.reconstructor import Reconstructor
from .resources import BUNDLED_MODEL, DEMO_NOTICE, is_bundled_model
from .terminal import StageBar, Terminated, terminate_like_interrupt
from .training.trainer import TrainConfig, Trainer

# every failure a user can cause or meet (bad files, full disks, missing folders): one line, exit 2
USER_ERRORS = (CheckpointError, DownloadError, NoUsableImagesError, SceneFileError, ValueError, RuntimeError, OSError)


def _add_fast_bf16(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fast-cpu-bf16", action="store_true",
                        help="official checkpoints on a CPU without bf16 units: float32 products for the bf16 "
                             "Newton-Schulz, ~65x faster there, within the parity tolerances of the outputs")
    parser.add_argument("--compile", action="store_true",
                        help="compile the TTT layers' elementwise work (torch.compile; for a GPU; the first run "
                             "compiles, and where compiling fails the eager code runs, with a warning)")


VARIANTS = tuple(OFFICIAL_CONFIGS)  # the published checkpoints
CHECKPOINT_HELP = ("an official .pt, our .safetensors, or 'official[:VARIANT]' to download the authors' "
                   "checkpoint once (default variant state_query); default: the bundled demonstration model")


def _reconstructor(args: argparse.Namespace, notice: bool = False) -> Reconstructor:
    """The model the user named; `notice`: say so when it is the demonstration model."""
    path = resolve_checkpoint(args.checkpoint)
    if not path.exists() and not args.checkpoint:
        raise CheckpointError(f"the bundled model is missing ({BUNDLED_MODEL}); pass --checkpoint PATH")
    if notice and is_bundled_model(path) and not getattr(args, "quiet", False):
        print(f"note: {DEMO_NOTICE}", file=sys.stderr)
    rec = Reconstructor.from_checkpoint(path, args.device, getattr(args, "variant", None))
    rec.fast_cpu_bf16 = getattr(args, "fast_cpu_bf16", False)
    rec.model.set_compiled_kernels(getattr(args, "compile", False))
    return rec


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .pipeline.distributed import Launch

    formats = check_formats([f.strip() for f in (args.export or "").split(",") if f.strip()])
    launch = Launch.from_env()
    if args.nproc > 1 and launch is None:
        return _launch_processes(args)
    if launch is not None:
        return _reconstruct_as_rank(args, launch, formats)
    rec = _reconstructor(args, notice=True)
    print(f"model: {rec.description} on {rec.device}", file=sys.stderr)
    bar = StageBar(args.quiet)
    sampling = VideoSampling(fps=args.fps, max_frames=args.video_frames)
    # the scene and its exports are staged and published together: a failure or a cancel keeps
    # the previous run's outputs, and a second run into the same folder waits for no one
    with Publication(args.output, output_names(formats)) as pub:
        try:
            recon = rec.reconstruct(
                args.inputs, mode=args.mode, resolution=args.resolution, max_frames=args.max_frames, sampling=sampling,
                window_size=args.window_size, keep_state=not args.no_state, points_from=args.points_from, progress=bar,
            )
        finally:
            bar.close()
        _write_outputs(recon, formats, pub, bar)
    return _summary(recon, formats, Path(args.output))


def output_names(formats: list[str]) -> list[str]:
    """What a reconstruction publishes in its output folder."""
    return ["scene.zipmap"] + [DEFAULT_NAMES[f] for f in formats]


def _write_outputs(recon: Reconstruction, formats: list[str], pub: Publication, bar: StageBar) -> None:
    for name, reason in recon.metadata.get("skipped", []):
        print(f"skipped {name}: {reason}", file=sys.stderr)
    for note in recon.metadata.get("sampling_notes", []):  # fewer frames than asked: say why
        print(note, file=sys.stderr)
    recon.save(pub.path("scene.zipmap"))
    for fmt in formats:
        export(recon, fmt, pub.path(DEFAULT_NAMES[fmt]), progress=bar)
        bar.close()


def _launch_processes(args: argparse.Namespace) -> int:
    """`--nproc N`: the same command in N local processes, one reconstruction split across them."""
    from .pipeline.distributed import launch_local

    if args.window_size:
        raise ValueError("--nproc splits bidirectional reconstructions; the windowed (streaming) order runs in one process")
    argv, skip = [], False
    for item in args.argv:  # the children get the command without --nproc
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            argv.append(item)
    return launch_local(args.nproc, argv, args.dist_timeout)


def _reconstruct_as_rank(args: argparse.Namespace, launch, formats: list[str]) -> int:
    """One process of a split reconstruction (ours or torchrun's): every rank computes its frames;
    rank 0 gathers, assembles and writes."""
    import torch.distributed as dist

    from .pipeline.distributed import (
        die_with_parent,
        init_group,
        make_shard,
        reconstruct_split,
    )

    if os.environ.get("ZIPMAP_LAUNCHED"):
        die_with_parent()
    if args.window_size:
        raise ValueError("the windowed (streaming) order runs in one process: run without torchrun or --nproc")
    args.device = str(init_group(launch, float(os.environ.get("ZIPMAP_DIST_TIMEOUT", args.dist_timeout))))
    root = launch.rank == 0
    try:
        rec = _reconstructor(args, notice=root)
        if root:
            print(f"model: {rec.description}, split across {launch.world} processes", file=sys.stderr)
        bar = StageBar(args.quiet or not root)
        inputs = load_inputs(args.inputs, VideoSampling(fps=args.fps, max_frames=args.video_frames), args.max_frames,
                             prepare=Preparation(args.mode, args.resolution or rec.cfg.img_size))
        shard = make_shard(len(inputs.frames), launch)
        if not root:
            reconstruct_split(rec, inputs, shard, args.mode, args.resolution, args.points_from, not args.no_state, bar)
            return 0
        with Publication(args.output, output_names(formats)) as pub:
            try:
                recon = reconstruct_split(rec, inputs, shard, args.mode, args.resolution, args.points_from,
                                          not args.no_state, bar)
            finally:
                bar.close()
            assert recon is not None
            _write_outputs(recon, formats, pub, bar)
        return _summary(recon, formats, Path(args.output))
    finally:
        dist.destroy_process_group()


def _summary(recon: Reconstruction, formats: list[str], out_dir: Path) -> int:
    for fmt in formats:
        print(f"exported {fmt}: {out_dir / DEFAULT_NAMES[fmt]}", file=sys.stderr)
    t = recon.timings
    print(
        f"{recon.num_frames} frames at {recon.image_hw[1]}x{recon.image_hw[0]}: model {t['model_s']:.2f} s "
        f"({t['per_frame_s']:.3f} s/frame), total {t['total_s']:.2f} s -> {out_dir / 'scene.zipmap'}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
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
    from .model.geometry import intrinsics_from_fov
    from .pipeline.camera_path import orbit_path, read_poses, render_path

    recon = Reconstruction.load(args.scene)
    rec = None
    if args.checkpoint or BUNDLED_MODEL.exists():
        rec = _reconstructor(args, notice=True)
        if not rec.model.can_render:
            print(f"{rec.description} has no novel-view head: rendering the point-cloud fallback", file=sys.stderr)
    w, h = args.size or (recon.image_hw[1], recon.image_hw[0])
    k = intrinsics_from_fov(args.fov, (h, w)).numpy()
    if args.c2w:
        poses, k_file = read_poses(args.c2w)
        k = k_file if k_file is not None else k
    else:
        poses = orbit_path(recon, args.orbit)
    bar = StageBar(args.quiet)
    try:
        folder = render_path(rec, recon, poses, k, (h, w), args.output, fps=args.fps, progress=bar)
    finally:
        bar.close()
    print(f"rendered {len(poses)} views to {folder} (frames/, path.mp4, path.json)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    loaded = convert(args.src, args.dst, args.variant)
    print(f"{Path(args.src).name}: {loaded.description} -> {args.dst}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    path = download_official(args.variant, args.cache_dir)
    print(path)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.checkpoint, args.variant)
    n = sum(p.numel() for p in loaded.model.parameters())
    cfg = loaded.model.cfg
    print(f"{loaded.path.name}: {loaded.description}")
    print(f"variant {loaded.variant}, {n / 1e6:.1f} M parameters, image size {cfg.img_size}, "
          f"embed {cfg.embed_dim}, depth {cfg.aggregator.depth}, novel views: {'yes' if cfg.enable_nvs else 'no'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_file(
        args.config, output=args.output, steps=args.steps, device=args.device, init=args.init,
        time_budget_s=args.time_budget, threads=args.threads, precision=args.precision,
    )
    trainer = Trainer(cfg, log=lambda line: print(line, flush=True))
    total = sum(p.numel() for p in trainer.model.parameters())
    part = f" ({trainer.trainable_parameters / 1e6:.2f} M trained)" if trainer.trainable_parameters < total else ""
    print(f"training '{trainer.model.cfg.name}' on {trainer.device}: {total / 1e6:.2f} M parameters{part} -> {cfg.output}",
          flush=True)
    trainer.run()
    print(f"saved {trainer.model_path} after {trainer.step} steps")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .training.synthetic import make_dataset

    bar = StageBar(args.quiet)
    try:
        paths = make_dataset(args.output, args.scenes, args.views, args.held_out, args.seed, (args.height, args.width),
                             args.trajectory, progress=bar)
    finally:
        bar.close()
    print(f"wrote {len(paths)} scenes to {args.output}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .training.evaluation import evaluate, format_table, write_json

    rec = _reconstructor(args)
    bar = StageBar(args.quiet)
    try:
        result = evaluate(rec, args.scenes, progress=bar)
    finally:
        bar.close()
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def build_parser(extra: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zipmap", description="ZipMap 3D reconstruction from photos and videos.")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("reconstruct", help="reconstruct a scene from images, folders or videos")
    r.add_argument("inputs", nargs="+", help="image files, folders or videos")
    r.add_argument("-o", "--output", required=True, help="output folder (receives scene.zipmap)")
    r.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    r.add_argument("--variant", choices=VARIANTS, help="force the official variant")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    r.add_argument("--resolution", type=resolution,
                   help=f"model image width, a multiple of 14 up to {MAX_RESOLUTION} (default: the model's)")
    r.add_argument("--mode", choices=("crop", "pad"), default="crop")
    r.add_argument("--max-frames", type=positive_int(MAX_FRAMES), help="use at most this many frames, evenly spaced")
    r.add_argument("--fps", type=number(float, 0, 1000, lo_open=True), default=1.0, help="video sampling rate (frames per second)")
    r.add_argument("--video-frames", type=positive_int(MAX_FRAMES), help="take this many evenly spaced frames per video instead")
    r.add_argument("--window-size", type=number(int, 0, MAX_FRAMES), help="TTT window in frames (0 = bidirectional)")
    r.add_argument("--nproc", type=positive_int(MAX_PROCESSES), default=1,
                   help="split the reconstruction across N local processes (gloo on CPU, NCCL with one GPU each); "
                        "under torchrun the split follows the launcher's processes")
    r.add_argument("--dist-timeout", type=number(float, 0, 1e6, lo_open=True), default=300.0,
                   help="seconds a split run waits for a silent process before it stops with an error")
    r.add_argument("--no-state", action="store_true", help="do not keep the scene state")
    r.add_argument("--points-from", choices=POINT_SOURCES, default="depth",
                   help="world points from unprojected depth (default) or the point head (runs one more dense head)")
    _add_fast_bf16(r)
    r.add_argument("--export", help=f"also export these formats into the output folder ({','.join(FORMATS)})")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_reconstruct)

    x = sub.add_parser("export", help="export a .zipmap scene to PLY, GLB, a mesh, COLMAP or nerfstudio")
    x.add_argument("scene", help="a .zipmap scene file")
    x.add_argument("--format", required=True, choices=FORMATS)
    x.add_argument("-o", "--output", required=True, help="file (ply, glb, mesh: .ply/.obj/.glb) or folder (colmap, nerfstudio)")
    x.add_argument("--percentile", type=number(float, 0, 100), help="drop points below this confidence percentile")
    x.add_argument("--voxel-size", type=number(float, 0, 1e9, lo_open=True),
                   help="mesh voxel size in scene units (default: from the scene's extent)")
    x.add_argument("--text", action="store_true", help="COLMAP text files instead of binary")
    x.add_argument("-q", "--quiet", action="store_true")
    x.set_defaults(func=cmd_export)

    rn = sub.add_parser("render", help="render novel views of a .zipmap scene from its scene state")
    rn.add_argument("scene")
    src = rn.add_mutually_exclusive_group(required=True)
    src.add_argument("--c2w", help="JSON with camera-to-world matrices (scene frame, OpenCV axes) and optional intrinsics")
    src.add_argument("--orbit", type=positive_int(MAX_PATH_VIEWS), help="render an orbit of N views around the scene")
    rn.add_argument("-o", "--output", required=True, help="output folder")
    rn.add_argument("--checkpoint", help="the model that made the scene: " + CHECKPOINT_HELP)
    rn.add_argument("--variant", choices=VARIANTS)
    rn.add_argument("--device", default="auto")
    rn.add_argument("--size", type=render_size, help="WxH (default: the scene's image size)")
    rn.add_argument("--fov", type=number(float, 1, 170), default=60.0, help="vertical field of view in degrees (without intrinsics)")
    rn.add_argument("--fps", type=number(float, 0, 240, lo_open=True), default=24.0)
    rn.add_argument("-q", "--quiet", action="store_true")
    rn.set_defaults(func=cmd_render)

    add_bench_parser(sub)

    c = sub.add_parser("convert", help="convert an official .pt checkpoint to our safetensors format")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--variant", choices=VARIANTS)
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("download", help="download an official checkpoint through huggingface_hub")
    d.add_argument("variant", choices=VARIANTS)
    d.add_argument("--cache-dir")
    d.set_defaults(func=cmd_download)

    i = sub.add_parser("info", help="describe a checkpoint")
    i.add_argument("checkpoint")
    i.add_argument("--variant", choices=VARIANTS)
    i.set_defaults(func=cmd_info)
    t = sub.add_parser("train", help="train (or fine-tune) ZipMap on procedurally generated scenes")
    t.add_argument("config", nargs="?", default="", help="training settings (JSON); see configs/")
    t.add_argument("-o", "--output", help="run folder (checkpoints, log.jsonl, model.safetensors)")
    t.add_argument("--steps", type=positive_int(10**9))
    t.add_argument("--init", help="start from this checkpoint (official .pt or ours)")
    t.add_argument("--device")
    t.add_argument("--threads", type=positive_int(1024))
    t.add_argument("--precision", choices=PRECISIONS,
                   help="bf16 autocast or float32 (default auto: bf16 on a GPU, float32 on a CPU)")
    t.add_argument("--time-budget", type=number(float, 0, 1e9, lo_open=True), help="fit the number of steps to this many seconds")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="score a model on scene folders with ground truth (see `generate`)")
    e.add_argument("scenes", help="a scene folder, or a folder of them")
    e.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    e.add_argument("--variant", choices=VARIANTS)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="also write the full results here")
    _add_fast_bf16(e)
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=cmd_eval)

    g = sub.add_parser("generate", help="write procedurally generated scenes with ground truth")
    g.add_argument("output")
    g.add_argument("--scenes", type=positive_int(100_000), default=10)
    g.add_argument("--views", type=positive_int(1024), default=8, help="input views per scene")
    g.add_argument("--held-out", type=number(int, 0, 1024), default=2, help="extra views between the inputs, for novel-view tests")
    g.add_argument("--seed", type=int, default=20_000_000, help="first scene's seed (training uses 10,000,000 up)")
    g.add_argument("--width", type=number(int, 14, 2048), default=224)
    g.add_argument("--height", type=number(int, 14, 2048), default=168)
    g.add_argument("--trajectory", choices=("orbit", "ring", "sweep"))
    g.add_argument("-q", "--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)
    if extra is not None:
        extra(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    previous = terminate_like_interrupt()
    try:
        return args.func(args)
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"zipmap: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
