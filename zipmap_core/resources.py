"""Where the files shipped with ZipMap Studio live: the bundled model, the sample scene, icons,
and what a user must be told about the bundled model."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BUNDLED_MODEL = RESOURCES / "zipmap_small.safetensors"
SAMPLE_SCENE = RESOURCES / "samples"
REAL_SAMPLE = SAMPLE_SCENE / "real" / "great_wall.mp4"  # a real pan (Apache-2.0, see its NOTICE.md)
REAL_SAMPLE_FRAMES = 24  # what run-sample.sh, the tests and the README's table take from it
# shown where a user of the bundled model looks (the app's model panel and first start, the CLI)
DEMO_NOTICE = (
    "The bundled model is a small demonstration model trained on synthetic scenes: expect coarse "
    "depth, cameras that barely move and grey novel views. For real photos use an official "
    "checkpoint: `--checkpoint official` (the CLI or the app) or File > Get official weights "
    "downloads it once (about 5.5 GB) and uses it."
)


def is_bundled_model(path: str | Path | None) -> bool:
    return path is not None and Path(path).resolve() == BUNDLED_MODEL.resolve()
