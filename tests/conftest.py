import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


import pytest


@pytest.fixture(scope="module")
def tiny_model():
    """A randomly initialised tiny ZipMap (seed 0), in eval mode; build your own to change it."""
    import torch

    from zipmap_core.model.config import tiny_config
    from zipmap_core.model.zipmap import ZipMap

    torch.manual_seed(0)
    return ZipMap(tiny_config()).eval()


@pytest.fixture(scope="module")
def tiny_rec():
    """A Reconstructor on the CPU around a tiny model of its own (seed 0)."""
    import torch

    from zipmap_core.model.config import tiny_config
    from zipmap_core.model.zipmap import ZipMap
    from zipmap_core.pipeline.reconstructor import Reconstructor

    torch.manual_seed(0)
    return Reconstructor(ZipMap(tiny_config()).eval(), "cpu")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """`tiny_model` saved as our safetensors: what the command line and the app load."""
    from zipmap_core.io.checkpoints import save_model

    return save_model(tiny_model, tmp_path_factory.mktemp("model") / "tiny.safetensors", description="tiny test model")


@pytest.fixture(scope="module")
def recon():
    """A 3-frame 42x28 scene with exact geometry (a generated scene's ground truth)."""
    from scenes import truth_reconstruction

    return truth_reconstruction(views=3, hw=(28, 42))


@pytest.fixture()
def scene(tmp_path, recon) -> Path:
    """`recon` saved as a .zipmap file."""
    return recon.save(tmp_path / "good.zipmap")


@pytest.fixture()
def photos(tmp_path, recon) -> Path:
    """`recon`'s frames as a folder of PNG photos."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(recon.images):
        Image.fromarray(image).save(folder / f"p{i}.png")
    return folder


@pytest.fixture
def window(qtbot, tmp_path, tiny_checkpoint):
    """The main window on the tiny model, with settings of its own and no sampling question
    (GUI test modules import `gui` first, which needs an X server). Closed after the test: its
    background jobs end there, none runs on into the next test. Earlier tests' windows are freed
    first, on the GUI thread: a garbage collection that a worker thread happened to run would
    destroy their Qt objects there (and can deadlock with the GUI thread)."""
    import gc

    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow

    gc.collect()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(str(tiny_checkpoint), settings=settings)
    w.loader.ask_video_sampling = False
    w.resize(1000, 700)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: w.rec is not None, timeout=10000)
    yield w
    w.close()
    assert not w.jobs.busy and w.jobs.pool.activeThreadCount() == 0, "a background job outlived its window"


def pytest_terminal_summary(terminalreporter) -> None:
    """The golden bit-identity diagnostic, one line per case, with the kernels that ran."""
    from golden import BIT_IDENTITY_REPORT, bit_identity_records

    if not bit_identity_records:
        return
    terminalreporter.section("golden bit-identity (diagnostic, not asserted)")
    for r in bit_identity_records:
        verdict = (
            "bit-identical"
            if r["bit_identical"]
            else (f"{r['differing']} of {r['tensors']} tensors differ (max rel RMS {r['max_rel_rms']:.2e}, within tolerance)")
        )
        terminalreporter.write_line(f"{r['case']}: {verdict}")
    k = bit_identity_records[0]["kernels"]
    terminalreporter.write_line(
        f"kernels: torch {k['torch']}, ATen {k['aten_capability']}, CPU {' '.join(k['cpu_flags'])}; record in {BIT_IDENTITY_REPORT}"
    )
