"""`zipmap convert`, `zipmap download` and `zipmap info`: the checkpoints themselves."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import VARIANTS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """convert's, download's and info's options."""
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


def cmd_convert(args: argparse.Namespace) -> int:
    from ..io.checkpoints import convert

    loaded = convert(args.src, args.dst, args.variant)
    print(f"{Path(args.src).name}: {loaded.description} -> {args.dst}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from ..io.download import download_official

    path = download_official(args.variant, args.cache_dir)
    print(path)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..io.checkpoints import load_checkpoint

    loaded = load_checkpoint(args.checkpoint, args.variant)
    n = sum(p.numel() for p in loaded.model.parameters())
    cfg = loaded.model.cfg
    print(f"{loaded.path.name}: {loaded.description}")
    print(
        f"variant {loaded.variant}, {n / 1e6:.1f} M parameters, image size {cfg.img_size}, "
        f"embed {cfg.embed_dim}, depth {cfg.aggregator.depth}, novel views: {'yes' if cfg.enable_nvs else 'no'}"
    )
    return 0
