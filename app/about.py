"""What Help > About says: the versions a bug report needs."""

from __future__ import annotations

import platform


def about_text(app_name: str) -> str:
    import PySide6
    import torch
    import vispy

    import zipmap_core

    return (
        f"{app_name} {zipmap_core.__version__}\nZipMap (CVPR 2026) reconstruction: photos in, 3D scene and "
        f"queryable scene state out.\n\nPython {platform.python_version()} · PyTorch {torch.__version__} · "
        f"PySide6 {PySide6.__version__} · VisPy {vispy.__version__}"
    )
