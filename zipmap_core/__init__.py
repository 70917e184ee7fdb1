"""ZipMap engine: a faithful implementation of ZipMap (CVPR 2026) with no GUI dependencies."""

from .cancel import Cancelled, CancelToken
from .device import select_device
from .io.checkpoints import CheckpointError, convert, load_checkpoint, save_model
from .io.inputs import NoUsableImagesError, VideoSampling, load_inputs
from .io.reconstruction import Reconstruction, SceneFileError
from .model.config import OFFICIAL_CONFIGS, ZipMapConfig, get_config
from .model.zipmap import ZipMap
from .pipeline.reconstructor import NovelViews, Reconstructor
from .resources import BUNDLED_MODEL

__version__ = "0.1.0"

__all__ = [
    "BUNDLED_MODEL",
    "OFFICIAL_CONFIGS",
    "CancelToken",
    "Cancelled",
    "CheckpointError",
    "NoUsableImagesError",
    "NovelViews",
    "Reconstruction",
    "Reconstructor",
    "SceneFileError",
    "VideoSampling",
    "ZipMap",
    "ZipMapConfig",
    "convert",
    "get_config",
    "load_checkpoint",
    "load_inputs",
    "save_model",
    "select_device",
]
