"""`zipmap train`, `zipmap eval` and `zipmap generate`: models trained and scored on generated
scenes with ground truth."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import InputError
from ..options import ENGINES, HELD_OUT_EVERY, PRECISIONS, VARIANTS, add_video_sampling, number, positive_int
from .common import CHECKPOINT_HELP, add_numerics, reconstructor
from .terminal import StageBar


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """train's, eval's and generate's options."""
    t = sub.add_parser("train", help="train (or fine-tune) ZipMap on procedurally generated scenes")
    t.add_argument("config", nargs="?", default="", help="training settings (JSON); see configs/")
    t.add_argument("-o", "--output", help="run folder (checkpoints, log.jsonl, model.safetensors)")
    t.add_argument("--steps", type=positive_int(10**9))
    t.add_argument("--init", help="start from this checkpoint (official .pt or ours)")
    t.add_argument("--device")
    t.add_argument("--threads", type=positive_int(1024))
    t.add_argument("--precision", choices=PRECISIONS, help="bf16 autocast or float32 (default auto: bf16 on a GPU, float32 on a CPU)")
    t.add_argument("--time-budget", type=number(float, 0, 1e9, lo_open=True), help="fit the number of steps to this many seconds")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser(
        "eval",
        help="score a model on scene folders with ground truth (see `generate`), or on real footage against COLMAP (--against colmap)",
    )
    e.add_argument("scenes", nargs="+", help="a scene folder, or a folder of them; with --against colmap: photos, folders or a video")
    e.add_argument(
        "--against",
        choices=("truth", "colmap"),
        default="truth",
        help="truth: the scene folders' ground truth; colmap: the classical engine's cameras and points on the same frames",
    )
    e.add_argument(
        "--novel-views",
        action="store_true",
        help="judge novel views on real footage: every K-th frame held out of the dense stage and of every renderer, "
        "rendered at its registered camera by each source (photos, state, points) and the baselines, scored by PSNR and SSIM",
    )
    e.add_argument(
        "--every",
        type=number(int, 2, 1000),
        default=HELD_OUT_EVERY,
        help=f"with --novel-views: hold out every K-th frame (default {HELD_OUT_EVERY})",
    )
    e.add_argument("-o", "--output", help="with --novel-views: a side-by-side PNG per held-out frame into this folder")
    e.add_argument(
        "--engine", choices=ENGINES, default="zipmap", help="with --against colmap or --novel-views: the engine that makes the scene"
    )
    e.add_argument("--refine", action="store_true", help="with --against colmap or --novel-views: the network refined by COLMAP")
    add_video_sampling(e)
    e.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    e.add_argument("--variant", choices=VARIANTS)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="also write the full results here")
    add_numerics(e)
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


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.trainer import TrainConfig, Trainer

    cfg = TrainConfig.from_file(
        args.config,
        output=args.output,
        steps=args.steps,
        device=args.device,
        init=args.init,
        time_budget_s=args.time_budget,
        threads=args.threads,
        precision=args.precision,
    )
    trainer = Trainer(cfg, log=lambda line: print(line, flush=True))
    total = sum(p.numel() for p in trainer.model.parameters())
    part = f" ({trainer.trainable_parameters / 1e6:.2f} M trained)" if trainer.trainable_parameters < total else ""
    print(f"training '{trainer.model.cfg.name}' on {trainer.device}: {total / 1e6:.2f} M parameters{part} -> {cfg.output}", flush=True)
    trainer.run()
    print(f"saved {trainer.model_path} after {trainer.step} steps")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ..training.scene_folders import make_dataset

    bar = StageBar(args.quiet)
    try:
        paths = make_dataset(
            args.output, args.scenes, args.views, args.held_out, args.seed, (args.height, args.width), args.trajectory, progress=bar
        )
    finally:
        bar.close()
    print(f"wrote {len(paths)} scenes to {args.output}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..training.evaluation import evaluate, format_table

    if args.novel_views:
        return _eval_novel_views(args)
    if args.against == "colmap":
        return _eval_against_colmap(args)
    if len(args.scenes) != 1 or args.engine == "colmap" or args.refine:
        raise InputError("scoring against ground truth takes one scene folder (or a folder of them) and the network")
    args.scenes = args.scenes[0]
    rec = reconstructor(args)
    return _scored(lambda bar: evaluate(rec, args.scenes, progress=bar), format_table, args)


def _scored(work: Callable[[StageBar], dict], table: Callable[[dict], str], args: argparse.Namespace) -> int:
    """Runs an evaluation under a stage bar, prints its table and writes `--json`."""
    from ..training.evaluation import write_json

    bar = StageBar(args.quiet)
    try:
        result = work(bar)
    finally:
        bar.close()
    print(table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _eval_against_colmap(args: argparse.Namespace) -> int:
    """`eval --against colmap INPUT`: the chosen engine against the classical engine, same frames."""
    from ..engines import engine_name, make_engine
    from ..io.inputs import VideoSampling
    from ..pipeline.reconstruct_options import ReconstructOptions
    from ..sfm.scoring import evaluate_against_colmap, format_scores

    engine = make_engine(engine_name(args.engine, args.refine), lambda spec: reconstructor(args, checkpoint=spec), model=args.checkpoint)
    options = ReconstructOptions(sampling=VideoSampling(fps=args.fps, max_frames=args.video_frames))
    return _scored(lambda bar: evaluate_against_colmap(engine, args.scenes, options, progress=bar), format_scores, args)


def _eval_novel_views(args: argparse.Namespace) -> int:
    """`eval --novel-views INPUT`: held-out frames rendered by every source, scored."""
    from pathlib import Path

    from ..dense.heldout import default_offset
    from ..engines import engine_name, make_engine
    from ..held_out import evaluate_novel_views, format_novel_views
    from ..io.inputs import VideoSampling
    from ..pipeline.reconstruct_options import ReconstructOptions

    engine = make_engine(engine_name(args.engine, args.refine), lambda spec: reconstructor(args, checkpoint=spec), model=args.checkpoint)
    network = engine.network() if engine.capabilities.keeps_state else None  # its scene state is judged too
    options = ReconstructOptions(sampling=VideoSampling(fps=args.fps, max_frames=args.video_frames))
    out = Path(args.output) if args.output else None
    offset = default_offset(args.every)

    def work(bar: StageBar) -> dict:
        result = evaluate_novel_views(engine, args.scenes, options, args.every, offset, out, network, bar)
        return {**result, "every": args.every}

    return _scored(work, format_novel_views, args)
