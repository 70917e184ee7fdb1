"""COLMAP (pycolmap) beside the network.

- `workspace`: a run's images and database, feature extraction and matching of chosen pairs,
  with progress and cancel bridged to pycolmap's token;
- `pairs`: which frames to match (sequential, exhaustive, or each frame with its k most
  overlapping by ZipMap's own cameras and depth, linear in the number of frames);
- `models`: a COLMAP model to and from a `Reconstruction`'s cameras, tracks and sparse depth;
- `engine`: the classical engine (COLMAP's incremental SfM alone);
- `refine`: ZipMap's cameras bundle-adjusted, depth brought onto the refined cameras;
- `scoring`: cameras and depth scored against COLMAP's (RRA, RTA, AUC, AbsRel, delta).

Known intrinsics are an input (`io.intrinsics`); which engine makes a scene is `engines`.
"""
