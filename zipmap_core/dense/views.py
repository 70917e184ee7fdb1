"""Which frames each frame is matched against, and the depths it searches.

Partners are chosen by the triangulation angle they make at the frame's typical depth (too small
and depth is noise, too large and the pictures stop looking alike), by how much of the frame they
see, and, with COLMAP's tracks, by the points both saw; they are split between the two sides of
the frame so that what one partner cannot see behind an edge the other can. Only the nearest
cameras and the most co-visible frames are scored, so the choice costs time linear in N.
The depth range comes from the sparse points the frame saw (robust percentiles with a margin),
or from the prior where too few points were seen."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from ..io.tracks import Tracks
from .cameras import axes, centres, pixel_rays, project

CANDIDATES = 16  # frames scored per frame: nearest cameras and most co-visible frames each
SPREAD_POOL = 128  # nearest cameras the evenly spread candidates are drawn from
REACH = 3.0  # candidates reach out to the baseline that makes this many times BEST_ANGLE
BEST_ANGLE = 6.0  # degrees: the triangulation angle partners are scored best at
ANGLE_SPREAD = 0.6  # width of that preference, in natural-log units of the angle
MIN_ANGLE = 0.75  # degrees: below this a pair measures no depth worth having
MIN_OVERLAP = 0.3  # share of the frame a partner must see
RANGE_PERCENTILES = (2.0, 98.0)  # of the sparse depths a frame saw
RANGE_MARGIN = (0.6, 1.6)  # the depth range is those percentiles times these
MIN_RANGE_POINTS = 12  # fewer sparse points in a frame than this: its range comes from elsewhere
GRID = (6, 8)  # pixels sampled (rows, columns) to measure how much of a frame a partner sees


def _range_of(depths: np.ndarray) -> tuple[float, float] | None:
    """(near, far) of a frame's depth samples: robust percentiles widened by the margin."""
    depths = depths[np.isfinite(depths) & (depths > 0)]
    if depths.size < MIN_RANGE_POINTS:
        return None
    lo, hi = np.percentile(depths, RANGE_PERCENTILES)
    return float(lo * RANGE_MARGIN[0]), float(hi * RANGE_MARGIN[1])


def depth_ranges(extrinsics: np.ndarray, tracks: Tracks | None, prior_depth: np.ndarray | None, n: int) -> list[tuple[float, float] | None]:
    """Per frame (near, far) to search: from the sparse points it saw, else from the prior, else
    None (nothing known: search from infinity)."""
    found: list[tuple[float, float] | None] = [None] * n
    if tracks is not None and len(tracks.observations):
        obs = tracks.observations[tracks.observations[:, 1] < n]
        obs = obs[np.argsort(obs[:, 1], kind="stable")]  # grouped by frame: one pass, linear in N
        point, frame = obs[:, 0], obs[:, 1]
        z = np.einsum("mj,mj->m", extrinsics[frame, 2, :3].astype(np.float64), tracks.xyz[point]) + extrinsics[frame, 2, 3]
        bounds = np.searchsorted(frame, np.arange(n + 1))
        found = [_range_of(z[bounds[i] : bounds[i + 1]]) for i in range(n)]
    if prior_depth is not None:
        found = [r if r is not None else _range_of(prior_depth[i]) for i, r in enumerate(found)]
    return found


def _typical_depth(ranges: list[tuple[float, float] | None], centre: np.ndarray) -> np.ndarray:
    """A depth per frame to score partners at: its range's geometric middle, else (nothing known)
    ten times the median spacing of the cameras."""
    spacing = cKDTree(centre).query(centre, k=min(2, len(centre)))[0]
    fallback = 10.0 * float(np.median(spacing[:, -1])) if spacing.ndim == 2 else 1.0
    known = [np.sqrt(r[0] * r[1] / (RANGE_MARGIN[0] * RANGE_MARGIN[1])) for r in ranges if r is not None]
    default = float(np.median(known)) if known else max(fallback, 1e-6)
    return np.array([default if r is None else np.sqrt(r[0] * r[1] / (RANGE_MARGIN[0] * RANGE_MARGIN[1])) for r in ranges])


def covisibility(tracks: Tracks | None, n: int) -> sparse.csr_matrix:
    """[N, N] count of sparse points each pair of frames saw (zero without tracks)."""
    if tracks is None or not len(tracks.observations):
        return sparse.csr_matrix((n, n))
    obs = tracks.observations[tracks.observations[:, 1] < n]
    seen = sparse.csr_matrix((np.ones(len(obs)), (obs[:, 0], obs[:, 1])), shape=(tracks.num_points, n))
    seen.data[:] = 1.0  # a point seen twice in one frame counts once
    return (seen.T @ seen).tocsr()


def _candidates(i: int, tree: cKDTree, shared: sparse.csr_matrix, reach: float) -> np.ndarray:
    """Frames worth scoring as frame i's partners: the nearest cameras, cameras spread evenly (by
    distance) out to `reach` (so dense videos still offer wide enough baselines), and the frames
    sharing most sparse points. A bounded number per frame: linear in N."""
    dist, pool = (np.atleast_1d(a) for a in tree.query(tree.data[i], k=min(SPREAD_POOL, tree.n)))
    within = pool[dist <= reach]
    spread = within[np.unique(np.round(np.linspace(0, len(within) - 1, CANDIDATES)).astype(int))] if len(within) else within
    row = shared.getrow(i)
    top = row.indices[np.argsort(-row.data)[: CANDIDATES + 1]]
    both = np.unique(np.concatenate((pool[: CANDIDATES + 1], spread, top)))
    return both[both != i]


def _overlap_and_angle(
    i: int, cand: np.ndarray, cams: tuple[np.ndarray, ...], hw: tuple[int, int], depth: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate: the share of frame i's pixels (at its typical depth) it sees, and the
    triangulation angle (degrees) at the point on frame i's optical axis."""
    ext, k, centre, axis = cams
    h, w = hw
    rays = pixel_rays(k[i], hw)[:: max(1, h // GRID[0]), :: max(1, w // GRID[1])].reshape(-1, 3)
    pts = (rays * depth - ext[i, :3, 3]) @ ext[i, :3, :3]  # world points at the typical depth
    overlap = np.zeros(len(cand))
    for c, j in enumerate(cand):
        u, v, z = project(pts, k[j], ext[j])
        overlap[c] = np.mean((z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h))
    target = centre[i] + axis[i] * depth
    a, b = target - centre[i], target - centre[cand]
    cos = (b @ a) / (np.linalg.norm(a) * np.linalg.norm(b, axis=1) + 1e-12)
    return overlap, np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _scores(overlap: np.ndarray, angle: np.ndarray, together: np.ndarray) -> np.ndarray:
    """Partner scores (0 = unusable): overlap times a preference for angles near BEST_ANGLE,
    weighted by the share of the frame's sparse points both saw."""
    pref = np.exp(-(np.log(np.maximum(angle, 1e-6) / BEST_ANGLE) ** 2) / (2 * ANGLE_SPREAD**2))
    usable = (overlap >= MIN_OVERLAP) & (angle >= MIN_ANGLE)
    return np.where(usable, overlap * pref * (0.25 + 0.75 * together), 0.0)


class Neighbourhood:
    """The frames near each frame, from cameras (and tracks): partners for matching, overlapping
    frames for checking and fusing."""

    def __init__(
        self,
        extrinsics: np.ndarray,
        intrinsics: np.ndarray,
        hw: tuple[int, int],
        ranges: list[tuple[float, float] | None],
        tracks: Tracks | None = None,
    ):
        self.ext = extrinsics.astype(np.float64)
        self.k = intrinsics.astype(np.float64)
        self.hw = hw
        self.n = len(extrinsics)
        self.centre, self.axis = centres(self.ext), axes(self.ext)
        self.tree = cKDTree(self.centre)
        self.shared = covisibility(tracks, self.n)
        self.depth = _typical_depth(ranges, self.centre)
        self.known = [r is not None for r in ranges]
        self._measured: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def measured(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(candidates, overlap, angle) of frame i (measured once)."""
        if i not in self._measured:
            reach = REACH * self.depth[i] * np.tan(np.radians(BEST_ANGLE)) if self.known[i] else np.inf
            cand = _candidates(i, self.tree, self.shared, reach)
            overlap, angle = _overlap_and_angle(i, cand, (self.ext, self.k, self.centre, self.axis), self.hw, self.depth[i])
            self._measured[i] = (cand, overlap, angle)
        return self._measured[i]

    def overlapping(self, i: int) -> np.ndarray:
        """Frames that see part of frame i, most overlap first."""
        cand, overlap, _ = self.measured(i)
        order = np.argsort(-overlap)
        return cand[order][overlap[order] > 0]

    def partners(self, i: int, count: int) -> np.ndarray:
        """Up to `count` partners of frame i, best first, alternating between its two sides."""
        cand, overlap, angle = self.measured(i)
        own = self.shared[i, i]
        together = np.array([self.shared[i, j] / own for j in cand]) if own > 0 else np.ones(len(cand))
        score = _scores(overlap, angle, together)
        side = np.sign((self.centre[cand] - self.centre[i]) @ self.ext[i, 0, :3])
        sides = []
        for s in (-1, 1):
            pick = (side == s) & (score > 0)
            sides.append(cand[pick][np.argsort(-score[pick])])
        first = 0 if score[side < 0].max(initial=0) >= score[side > 0].max(initial=0) else 1
        order = [s[r] for r in range(count) for s in (sides[first], sides[1 - first]) if r < len(s)]
        return np.array(order[:count], dtype=int)
