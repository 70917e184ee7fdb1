"""What every novel-view renderer returns (the scene state's query, image-based rendering from
the photos, the point splats): colour, depth and a per-pixel weight, for one or more cameras."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NovelViews:
    rgb: np.ndarray  # float32 [N, H, W, 3] in [0, 1]
    depth: np.ndarray  # float32 [N, H, W], in the scene's units (0: nothing seen)
    confidence: np.ndarray  # float32 [N, H, W]: the model's confidence, or the share covered (photos, points)
