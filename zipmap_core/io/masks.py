"""Masks as input (`--masks DIR`): a picture for each input in COLMAP's convention, black where a
pixel is to be ignored (a person, a car, the sky). They keep moving things out of the cameras
(no features there), the dense depth (no depth there) and the novel views (no masked pixel of a
photo is drawn into another view).

A photo `a.jpg`'s mask is `a.jpg.png` (COLMAP's name) or any picture named `a` (`a.png`); a
video's frames take one mask named after the video (`clip.png`, for a static occluder such as a
car's bonnet), or each frame its own, named as our exports name the frame. A mask that is not a
picture, has another size than its picture, or is missing is refused in one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..options import IMAGE_SUFFIXES, MAX_FRAMES
from .files import picture_stem
from .preprocess import ImageReadError, open_image, preprocess

KEEP_THRESHOLD = 0.5  # a mask pixel at least this bright (of white) is kept


@dataclass
class MaskSet:
    """The mask pictures of a folder by the picture name they belong to (`picture_stem`)."""

    folder: Path
    files: dict[str, Path]

    def file_for(self, name: str, source: Path | None = None) -> Path:
        """The mask of the frame `name` (from the file `source`): its own, else its video's."""
        keys = [picture_stem(name), picture_stem(Path(name).name + ".png")]  # a.png, or COLMAP's a.jpg.png
        if source is not None:  # one mask for every frame of a video: clip.png or clip.mp4.png
            keys += [picture_stem(source.stem), picture_stem(source.name)]
        for key in keys:
            if key in self.files:
                return self.files[key]
        raise InputError(f"{self.folder} has no mask for {name} (a mask is named like its picture: {Path(name).name}.png)")

    def check_covers(self, names: list[str], sources: list[Path | None]) -> None:
        """Every frame has a mask: said before any work, naming what is missing."""
        missing = []
        for name, source in zip(names, sources):
            try:
                self.file_for(name, source)
            except InputError:
                missing.append(name)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"{self.folder} holds no mask for {shown}: one mask a picture (black = ignore), named like it")

    def keep(self, name: str, source: Path | None, original_wh: tuple[int, int], mode: str, hw: tuple[int, int]) -> np.ndarray:
        """bool [H, W]: the pixels of the frame's model image (made at `mode` to `hw`) to keep."""
        path = self.file_for(name, source)
        try:
            mask = open_image(path)
        except ImageReadError as exc:  # its message starts with the file's name
            raise InputError(f"mask {exc}") from None
        if mask.size != tuple(original_wh):
            raise InputError(
                f"mask {path.name} is {mask.width}x{mask.height}, but its picture {Path(name).name} is {original_wh[0]}x{original_wh[1]}"
            )
        size = hw[1] if mode == "crop" else max(hw)
        image, _ = preprocess(Image.fromarray(np.asarray(mask.convert("L"))).convert("RGB"), mode, size)
        if tuple(image.shape[1:]) != tuple(hw):
            raise InputError(f"mask {path.name} does not map onto its {hw[1]}x{hw[0]} frame")
        return (image.mean(0) >= KEEP_THRESHOLD).numpy()

    def stack(self, names: list[str], sources: list[Path | None], sizes: np.ndarray, mode: str, hw: tuple[int, int]) -> np.ndarray:
        """bool [N, H, W] of frames `names` (from `sources`, pictures of `sizes` [N, 2] (w, h))."""
        self.check_covers(names, sources)
        return np.stack([self.keep(n, s, (int(w), int(h)), mode, hw) for n, s, (w, h) in zip(names, sources, sizes)])


def read_masks(folder: str | Path) -> MaskSet:
    """The mask pictures in `folder` (not read yet: a mask is decoded, size-checked, when used)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--masks {folder}: not a folder of mask pictures")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        files.setdefault(picture_stem(path.name), path)
        if len(files) > MAX_FRAMES:
            raise InputError(f"--masks {folder}: more than {MAX_FRAMES} pictures")
    if not files:
        raise InputError(f"--masks {folder}: no mask pictures in it (one a picture, black = ignore)")
    return MaskSet(folder, files)
