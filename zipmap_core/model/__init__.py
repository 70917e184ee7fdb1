"""The network: configuration, encoder, frame and TTT global blocks, heads, and the camera
geometry they share. No files, no devices: the ground floor every other layer stands on."""

from .config import ZipMapConfig
from .zipmap import ModelOutput, ZipMap

__all__ = ["ModelOutput", "ZipMap", "ZipMapConfig"]
