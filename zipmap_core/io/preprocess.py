"""Turning decoded pictures into the tensors the checkpoints were trained on.

The resize is PIL's bicubic, as in the authors' pipeline (OpenCV's bicubic differs), and the
crop / pad geometry reproduces theirs to the pixel; `golden/preprocess` pins it down.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import InputError
from ..model.aggregator import unit_float
from ..options import PATCH

MODES = ("crop", "pad")
DEFAULT_SIZE = 518
# Pictures above this many pixels are refused as potential decompression bombs.
MAX_PIXELS = 180_000_000
# Above BOMB_CHECK_PIXELS, a picture must bring at least one byte of file per MAX_PIXELS_PER_BYTE
# pixels: photographs take 1 to 30 bits a pixel; a 38 KB PNG of 180 M pixels (4,700 a byte) would
# only cost a gigabyte of memory to decode.
BOMB_CHECK_PIXELS = 16_000_000
MAX_PIXELS_PER_BYTE = 1000
# crop mode keeps the centre of a tall picture: at most this height-to-width ratio (beyond it the
# crop is a sliver, and the resized strip alone could take gigabytes)
MAX_CROP_ASPECT = 16


class ImageReadError(InputError):
    """One picture could not be used; the message names the file and why."""


@dataclass
class Crop:
    """Where a preprocessed image came from: its original size and the applied scale / offsets,
    so that intrinsics can be mapped back to the original picture."""

    original_wh: tuple[int, int]
    resized_wh: tuple[int, int]
    offset_xy: tuple[int, int]  # top-left of the resized picture inside the model image (pad>0, crop<0)


def pixel_map(src: Crop, dst: Crop) -> np.ndarray:
    """[3, 3]: pixel (x, y, 1) of a picture's model image made through `src` to the same point's
    pixel in its model image made through `dst` (two sizes of one picture: scales per axis, as
    both round their sides to whole patches, and the offsets of their crops or pads)."""

    def from_original(c: Crop) -> np.ndarray:
        sx, sy = c.resized_wh[0] / c.original_wh[0], c.resized_wh[1] / c.original_wh[1]
        return np.array([[sx, 0, c.offset_xy[0]], [0, sy, c.offset_xy[1]], [0, 0, 1.0]])

    return from_original(dst) @ np.linalg.inv(from_original(src))


def to_rgb(img: Image.Image, exif: bool = True) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white as the checkpoints expect."""
    if exif:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(unit_bytes_np(arr / peak), "L")
    if img.mode in ("P", "LA", "PA") or (img.mode == "L" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def open_image(path: str | Path, exif: bool = True) -> Image.Image:
    """Decodes a picture fully, with clear errors for unreadable, empty or oversized files."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                with Image.open(path) as img:
                    _check_pixels(path, img.size)
                    img.load()
                    out = to_rgb(img, exif)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{path.name}: refused, too many pixels (possible decompression bomb): {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path.name}: file not found") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path.name}: not a readable image ({exc})") from exc
    if out.width < 1 or out.height < 1:
        raise ImageReadError(f"{path.name}: empty image")
    return out


def _check_pixels(path: Path, wh: tuple[int, int]) -> None:
    """Before decoding: a picture whose pixels are far more than its bytes can hold is a bomb."""
    pixels = wh[0] * wh[1]
    size = path.stat().st_size
    if pixels > BOMB_CHECK_PIXELS and pixels > MAX_PIXELS_PER_BYTE * max(size, 1):
        raise ImageReadError(
            f"{path.name}: refused, {wh[0]}x{wh[1]} pixels in {size:,} bytes "
            f"({pixels // max(size, 1):,} pixels a byte; a possible decompression bomb)"
        )


def check_size(size: int) -> int:
    if size < PATCH or size % PATCH:
        raise InputError(f"resolution must be a positive multiple of {PATCH}, got {size}")
    return size


def target_size(width: int, height: int, mode: str, size: int) -> tuple[int, int]:
    """The resized (width, height) before cropping or padding."""
    if mode == "crop" and height > MAX_CROP_ASPECT * width:
        raise ImageReadError(
            f"a {width}x{height} picture is too tall for crop mode (the crop would keep "
            f"1/{height // width} of it; at most 1/{MAX_CROP_ASPECT}): use --mode pad"
        )
    if mode == "pad" and height > width:
        return round(width * (size / height) / PATCH) * PATCH, size
    return size, round(height * (size / width) / PATCH) * PATCH


def preprocess(img: Image.Image, mode: str = "crop", size: int = DEFAULT_SIZE, as_uint8: bool = False) -> tuple[torch.Tensor, Crop]:
    """RGB picture -> model image [3, H, W] in [0, 1] (or its bytes, `as_uint8`) and how it was
    obtained."""
    check_mode_and_size(mode, size)
    new_w, new_h = target_size(img.width, img.height, mode, size)
    resized = img.resize((max(new_w, PATCH), max(new_h, PATCH)), Image.Resampling.BICUBIC)
    return from_resized(np.asarray(resized, dtype=np.uint8), (img.width, img.height), mode, size, as_uint8)


def check_mode_and_size(mode: str, size: int) -> None:
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    check_size(size)


def from_resized(rgb: np.ndarray, original_wh: tuple[int, int], mode: str, size: int, as_uint8: bool = False) -> tuple[torch.Tensor, Crop]:
    """A picture already scaled to `target_size` (uint8 [h, w, 3]; a video frame scaled while it
    was decoded) -> the model image, cropped or padded, and its crop. `as_uint8` keeps the
    bytes ([3, H, W] uint8, white 255): a quarter of the memory until `unit_float`."""
    new_h, new_w = rgb.shape[:2]
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)
    if not as_uint8:
        t = unit_float(t)
    offset = (0, 0)
    if mode == "crop" and new_h > size:
        top = (new_h - size) // 2
        t = t[:, top : top + size]
        offset = (0, -top)
    elif mode == "pad":
        t, offset = pad_white(t, size, size)
    return t, Crop((int(original_wh[0]), int(original_wh[1])), (new_w, new_h), offset)


def unit_bytes(t: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> image bytes, rounded (the inverse of `unit_float` on bytes)."""
    return t.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def unit_bytes_np(a: np.ndarray) -> np.ndarray:
    """`unit_bytes` for numpy arrays: [0, 1] floats (clipped) -> image bytes, rounded."""
    return np.clip(np.asarray(a, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)


def pad_white(t: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Centres `t` [3, h, w] on a white canvas of the given size."""
    dh, dw = height - t.shape[1], width - t.shape[2]
    if dh <= 0 and dw <= 0:
        return t, (0, 0)
    top, left = max(dh, 0) // 2, max(dw, 0) // 2
    pad = (left, max(dw, 0) - left, top, max(dh, 0) - top)
    white = 255 if t.dtype == torch.uint8 else 1.0
    return torch.nn.functional.pad(t, pad, mode="constant", value=white), (left, top)


def stack_images(
    images: list[torch.Tensor], crops: list[Crop] | None = None, pad_to: tuple[int, int] | None = None, as_bytes: bool = False
) -> torch.Tensor:
    """Model images [3, h, w] (floats, or uint8 bytes as prepared at decode time) -> one batch
    [N, 3, H, W], mixed sizes padded with white to the largest height and width (or to `pad_to`,
    at least). Each image goes straight into its slot: one pass over memory instead of three
    (convert, pad, stack). `as_bytes`: a uint8 batch laid out [N, H, W, 3] in memory, so the
    same bytes are the reconstruction's colours and, converted a chunk at a time where the
    network runs, its input (`unit_float`)."""
    if not images:
        raise InputError("no images to stack")
    height = max([t.shape[1] for t in images] + ([pad_to[0]] if pad_to else []))
    width = max([t.shape[2] for t in images] + ([pad_to[1]] if pad_to else []))
    if as_bytes:
        out = torch.empty((len(images), height, width, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    else:
        out = torch.empty((len(images), 3, height, width))
    for i, t in enumerate(images):
        h, w = t.shape[1:]
        top, left = (height - h) // 2, (width - w) // 2
        if h != height or w != width:
            out[i].fill_(255 if as_bytes else 1.0)
            if crops is not None:
                ox, oy = crops[i].offset_xy
                crops[i].offset_xy = (ox + left, oy + top)
        slot = out[i, :, top : top + h, left : left + w]
        if t.dtype == out.dtype:
            slot.copy_(t)
        elif as_bytes:
            slot.copy_(unit_bytes(t))
        else:
            torch.div(t, 255, out=slot)  # as `unit_float`, bit for bit
    return out


def load_images(paths: list[str | Path], mode: str = "crop", size: int = DEFAULT_SIZE, exif: bool = True) -> torch.Tensor:
    """Files -> batch [N, 3, H, W], failing on the first unreadable file (see inputs.py for the
    forgiving path that skips and reports)."""
    tensors = [preprocess(open_image(p, exif), mode, size)[0] for p in paths]
    return stack_images(tensors)


def detail_image(image: Image.Image, crop: Crop, hw: tuple[int, int], factor: int) -> np.ndarray:
    """The model image's view `factor` times larger, from the full picture: [factor H, factor W, 3]
    uint8 whose pixel (x, y) is the model image's (x / factor, y / factor) exactly: the picture
    resized to `factor` times its resized size and placed at `factor` times its offset (a crop's
    offset is negative; a pad's margins are white, as in `preprocess`). For COLMAP, whose features
    need more pixels than a small model's images hold."""
    w, h = crop.resized_wh
    big = to_rgb(image, exif=False).resize((w * factor, h * factor), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (hw[1] * factor, hw[0] * factor), (255, 255, 255))
    canvas.paste(big, (crop.offset_xy[0] * factor, crop.offset_xy[1] * factor))
    return np.asarray(canvas)
