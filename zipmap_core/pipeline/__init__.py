"""From inputs to a `Reconstruction`: batch reconstruction, streaming, novel-view rendering, camera
paths, and the point-splat fallback for models without a novel-view head."""
