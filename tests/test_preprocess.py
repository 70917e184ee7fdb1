"""Preprocessing matches the authors' pipeline bit for bit, and odd pictures are handled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden import GOLDEN_DIR, load_case
from PIL import Image

from zipmap_core.io.preprocess import (
    ImageReadError,
    load_images,
    open_image,
    preprocess,
    stack_images,
)


def test_golden_preprocess_every_file_and_mode():
    meta, t = load_case("preprocess")
    for name in meta["files"]:
        img = open_image(GOLDEN_DIR / "preprocess_inputs" / name)
        for mode in ("crop", "pad"):
            ours, _ = preprocess(img, mode)
            expected = t[f"{name}.{mode}"]
            assert list(ours.shape) == meta["calls"][f"{name}.{mode}"]
            assert torch.equal(ours, expected), f"{name} {mode}: max diff {(ours - expected).abs().max()}"
    batch = load_images([GOLDEN_DIR / "preprocess_inputs" / n for n in meta["files"]], "crop")
    assert torch.equal(batch, t["all_files.crop"])


def test_other_resolutions_are_multiples_of_14():
    img = Image.new("RGB", (640, 480), (10, 20, 30))
    t, crop = preprocess(img, "crop", 224)
    assert t.shape == (3, 168, 224) and crop.resized_wh == (224, 168)
    with pytest.raises(ValueError, match="multiple of 14"):
        preprocess(img, "crop", 300)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = open_image(path)
    assert out.size == (20, 40)
    assert np.asarray(out)[:10].mean() > 200 and np.asarray(out)[-10:].mean() < 50


@pytest.mark.parametrize("mode", ["L", "I;16", "CMYK", "P", "LA", "RGBA"])
def test_odd_modes_become_rgb(tmp_path, mode):
    base = Image.linear_gradient("L").resize((64, 48))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base, np.uint16) * 257).astype(np.uint16))
        path = tmp_path / "deep.png"
    elif mode == "CMYK":
        img = Image.merge("CMYK", [base] * 4)
        path = tmp_path / "cmyk.jpg"
    else:
        img = base.convert(mode)
        path = tmp_path / f"{mode}.png" if mode != "P" else tmp_path / "pal.gif"
    img.save(path)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (64, 48)
    if mode in ("L", "I;16"):
        arr = np.asarray(out).astype(int)
        assert abs(arr[-1, 0, 0] - np.asarray(base)[-1, 0]) <= 1  # 16-bit scaled to 8 bits, not clipped


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (30, 30), (255, 0, 0, 0))
    img.save(tmp_path / "clear.png")
    assert np.asarray(open_image(tmp_path / "clear.png")).min() == 255


def test_corrupt_and_bomb_files_are_refused_by_name(tmp_path, monkeypatch):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        open_image(bad)
    big = tmp_path / "big.png"
    Image.new("L", (400, 400)).save(big)
    monkeypatch.setattr("zipmap_core.io.preprocess.MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        open_image(big)


def test_mixed_sizes_padded_white_and_offsets_tracked():
    a, ca = preprocess(Image.new("RGB", (100, 100), (0, 0, 0)), "crop", 56)
    b, cb = preprocess(Image.new("RGB", (200, 100), (0, 0, 0)), "crop", 56)
    batch = stack_images([a, b], [ca, cb])
    assert batch.shape == (2, 3, 56, 56)
    assert batch[1, :, 0].min() == 1.0 and cb.offset_xy == (0, 14)


def test_byte_batch_is_the_float_batch_and_its_colours():
    """The pipeline's uint8 batch: the same pixels as the float batch once converted (bit for
    bit), padded white, laid out [N, H, W, 3] so the colours need no copy."""
    from zipmap_core.model.aggregator import unit_float
    from zipmap_core.pipeline.assembly import to_colours

    rng = np.random.default_rng(0)
    a, ca = preprocess(Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)), "crop", 56, as_uint8=True)
    b, cb = preprocess(Image.fromarray(rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)), "crop", 56, as_uint8=True)
    assert a.dtype == torch.uint8
    floats = stack_images([unit_float(a), unit_float(b)], [ca, cb])
    _, ca2 = preprocess(Image.new("RGB", (100, 100)), "crop", 56)
    _, cb2 = preprocess(Image.new("RGB", (200, 100)), "crop", 56)
    raw = stack_images([a, b], [ca2, cb2], as_bytes=True)
    assert raw.dtype == torch.uint8 and raw.shape == floats.shape == (2, 3, 56, 56)
    assert torch.equal(unit_float(raw.contiguous()), floats)  # exactly the model's floats
    assert raw[1, :, 0].min() == 255 and cb2.offset_xy == cb.offset_xy == (0, 14)  # white padding, offsets kept
    colours = to_colours(raw)
    assert colours.data_ptr() == raw.data_ptr() and colours.shape == (2, 56, 56, 3)  # no copy
    assert torch.equal(colours, to_colours(floats))  # the floats rounded give the same colours
