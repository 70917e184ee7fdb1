import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny model saved as our safetensors."""
    import torch

    from zipmap_core.io.checkpoints import save_model
    from zipmap_core.model.config import tiny_config
    from zipmap_core.model.zipmap import ZipMap

    torch.manual_seed(1)
    return save_model(ZipMap(tiny_config()), tmp_path_factory.mktemp("model") / "tiny.safetensors", description="tiny test model")


@pytest.fixture
def window(qtbot, tmp_path, tiny_checkpoint):
    """The main window on the tiny model, with settings of its own and no sampling question
    (GUI test modules import `gui` first, which needs an X server)."""
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(str(tiny_checkpoint), settings=settings)
    w.loader.ask_video_sampling = False
    w.resize(1000, 700)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.rec is not None, timeout=10000)
    return w
