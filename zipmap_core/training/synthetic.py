"""Procedural multi-view scenes with exact geometry, for training and evaluating our own model.

A scene is a textured box room holding spheres, yawed boxes and vertical cylinders, lit by a point
light. Cameras follow an orbit, a random ring or a forward-facing sweep, with varied field of view.
Everything is analytic ray casting in torch, batched over scenes and views, so it runs on the GPU
that trains the model as well as on a laptop CPU, and a seed fixes every scene exactly.

World frame: y up, metres. Cameras use OpenCV axes; extrinsics are world-to-camera [R|t].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.geometry import invert_rigid, pixel_grid

ROOM_FACES = 6
SLOTS = 3  # per primitive kind
TRAJECTORIES = ("orbit", "ring", "sweep")


@dataclass
class SceneViews:
    """Rendered views of a batch of scenes: images [B,S,3,H,W] in [0,1], depth [B,S,H,W] (z, metres),
    extrinsics [B,S,3,4] world-to-camera, intrinsics [B,S,3,3]."""

    images: Tensor
    depth: Tensor
    extrinsics: Tensor
    intrinsics: Tensor

    def select(self, idx: slice | list[int]) -> SceneViews:
        return SceneViews(self.images[:, idx], self.depth[:, idx], self.extrinsics[:, idx], self.intrinsics[:, idx])


@dataclass
class SceneParams:
    room: Tensor  # [B, 3] half width x, height y, half depth z
    spheres: Tensor  # [B, K, 5] cx cy cz r active
    boxes: Tensor  # [B, K, 8] cx cy cz hx hy hz yaw active
    cylinders: Tensor  # [B, K, 6] cx cz r y0 y1 active
    tex_kind: Tensor  # [B, M] 0 checker, 1 stripes, 2 waves, 3 grain
    tex_colors: Tensor  # [B, M, 2, 3]
    tex_freq: Tensor  # [B, M, 4, 3]
    tex_phase: Tensor  # [B, M, 4]
    light: Tensor  # [B, 3] position
    ambient: Tensor  # [B]
    cam_radius: Tensor  # [B]


def uniform_sampler(g: torch.Generator, device: torch.device | str):
    """`u(*shape, lo=0, hi=1)`: uniform samples drawn on the CPU from `g` (the same numbers on
    every device), moved to `device`."""

    def u(*shape: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, device="cpu").to(device)

    return u


def sample_scenes(
    batch: int, seed: int, device: torch.device | str = "cpu", slots: int = SLOTS, size: float = 1.0, freq_hi: float = 9.0
) -> SceneParams:
    """Random scene layouts; objects stay inside 0.55x the camera radius so cameras never sit inside
    one. `slots` objects of each kind at `size` times the usual size, textures up to `freq_hi`
    cycles per metre (the defaults are the classic family the shipped model was trained on)."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    u = uniform_sampler(g, device)
    room = torch.stack((u(batch, lo=2.6, hi=4.5), u(batch, lo=2.4, hi=3.6), u(batch, lo=2.6, hi=4.5)), -1)
    cam_radius = torch.minimum(room[:, 0], room[:, 2]) - u(batch, lo=0.3, hi=0.7)
    reach = 0.5 * cam_radius[:, None]

    def place(k: int) -> tuple[Tensor, Tensor]:
        ang, rad = u(batch, k, hi=2 * math.pi), reach * u(batch, k).sqrt()
        return rad * torch.cos(ang), rad * torch.sin(ang)

    k = slots
    sx, sz = place(k)
    sr = u(batch, k, lo=0.2, hi=0.55) * size
    sy = torch.where(u(batch, k) < 0.7, sr, sr + u(batch, k, lo=0.2, hi=1.2))
    spheres = torch.stack((sx, sy, sz, sr, (u(batch, k) < 0.6).float()), -1)
    bx, bz = place(k)
    bh = torch.stack((u(batch, k, lo=0.15, hi=0.5), u(batch, k, lo=0.15, hi=0.8), u(batch, k, lo=0.15, hi=0.5)), -1) * size
    boxes = torch.cat((bx[..., None], bh[..., 1:2], bz[..., None], bh, u(batch, k, 1, hi=math.pi), (u(batch, k, 1) < 0.6).float()), -1)
    cx, cz = place(k)
    cr = u(batch, k, lo=0.1, hi=0.4) * size
    cylinders = torch.stack((cx, cz, cr, torch.zeros_like(cr), u(batch, k, lo=0.4, hi=2.0), (u(batch, k) < 0.5).float()), -1)
    m = ROOM_FACES + 3 * k
    tex_kind = (u(batch, m) * 4).long().clamp(max=3)
    base = u(batch, m, 1, 3)
    tex_colors = torch.cat((base, (base + u(batch, m, 1, 3, lo=-0.6, hi=0.6)).clamp(0, 1)), 2)
    direction = F.normalize(torch.randn(batch, m, 4, 3, generator=g).to(device), dim=-1)
    tex_freq = direction * u(batch, m, 4, 1, lo=1.5, hi=freq_hi)
    tex_phase = u(batch, m, 4, hi=2 * math.pi)
    light = torch.stack((u(batch, lo=-1, hi=1) * room[:, 0] * 0.6, room[:, 1] * 0.9, u(batch, lo=-1, hi=1) * room[:, 2] * 0.6), -1)
    return SceneParams(
        room, spheres, boxes, cylinders, tex_kind, tex_colors, tex_freq, tex_phase, light, u(batch, lo=0.3, hi=0.5), cam_radius
    )


def look_at_batch(eye: Tensor, target: Tensor) -> Tensor:
    """Camera-to-world [..., 3, 4] looking from `eye` at `target`, world y up, OpenCV camera axes."""
    forward = F.normalize(target - eye, dim=-1)
    up = torch.zeros_like(forward)
    up[..., 1] = 1.0
    right = F.normalize(torch.linalg.cross(forward, up, dim=-1), dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    return torch.cat((torch.stack((right, down, forward), -1), eye[..., None]), -1)


def sample_cameras(
    params: SceneParams, views: int, seed: int, image_hw: tuple[int, int], trajectory: str | None = None
) -> tuple[Tensor, Tensor]:
    """Per scene `views` cameras -> (camera-to-world [B,V,3,4], intrinsics [B,V,3,3])."""
    device = params.room.device
    b = params.room.shape[0]
    g = torch.Generator().manual_seed(seed + 7919)
    u = uniform_sampler(g, device)
    kinds = torch.tensor([TRAJECTORIES.index(trajectory)] * b, device=device) if trajectory else (u(b) * 3).long().clamp(max=2)
    start = u(b, 1, hi=2 * math.pi)
    steps = torch.linspace(0, 1, views, device=device)[None]
    orbit = start + u(b, 1, lo=1.0, hi=2 * math.pi) * steps
    ring = start + 2 * math.pi * (torch.arange(views, device=device)[None] + u(b, views, lo=0.0, hi=0.8)) / views
    radius = params.cam_radius[:, None] * u(b, views, lo=0.8, hi=1.0)
    height = u(b, 1, lo=0.9, hi=2.0) + u(b, views, lo=-0.25, hi=0.25)
    circle = torch.stack(
        (
            radius * torch.cos(torch.where(kinds[:, None] == 0, orbit, ring)),
            height,
            radius * torch.sin(torch.where(kinds[:, None] == 0, orbit, ring)),
        ),
        -1,
    )
    # forward-facing sweep: a lateral dolly along the tangent of the camera circle, looking inwards
    inward = -torch.stack((torch.cos(start), torch.zeros_like(start), torch.sin(start)), -1)  # [b, 1, 3]
    tangent = torch.stack((-torch.sin(start), torch.zeros_like(start), torch.cos(start)), -1)
    offset = (steps - 0.5) * u(b, 1, lo=1.2, hi=2.5) + u(b, views, lo=-0.05, hi=0.05)
    line = -inward * params.cam_radius[:, None, None] * 0.95 + tangent * offset[..., None]
    line = line + torch.stack((torch.zeros_like(height), height, torch.zeros_like(height)), -1)
    is_sweep = kinds[:, None, None] == 2
    eye = torch.where(is_sweep, line, circle)
    target = torch.where(
        is_sweep,
        eye + 2.5 * inward + u(b, views, 3, lo=-0.3, hi=0.3) - torch.tensor([0.0, 0.6, 0.0], device=device),
        torch.stack((u(b, views, lo=-0.4, hi=0.4), u(b, views, lo=0.2, hi=1.0), u(b, views, lo=-0.4, hi=0.4)), -1),
    )
    c2w = look_at_batch(eye, target)
    return c2w, centred_intrinsics(torch.deg2rad(u(b, 1, lo=45.0, hi=75.0)).expand(b, views), image_hw)


def centred_intrinsics(fov_y: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """K [..., 3, 3] of square pixels with the principal point at the centre (as ZipMap's pose
    encoding assumes) for vertical fields of view `fov_y` (radians)."""
    h, w = image_hw
    f = (h / 2) / torch.tan(fov_y / 2)
    k = torch.zeros((*fov_y.shape, 3, 3), device=fov_y.device)
    k[..., 0, 0], k[..., 1, 1] = f, f
    k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = w / 2, h / 2, 1.0
    return k


# ---- ray casting ----------------------------------------------------------------------------------
def _room(o: Tensor, d: Tensor, room: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    lo = torch.stack((-room[:, 0], torch.zeros_like(room[:, 1]), -room[:, 2]), -1)[:, None]
    hi = torch.stack((room[:, 0], room[:, 1], room[:, 2]), -1)[:, None]
    safe = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t_axis = torch.where(safe > 0, (hi - o) / safe, (lo - o) / safe)
    t, axis = t_axis.min(-1)
    positive = torch.gather(safe, -1, axis[..., None])[..., 0] > 0
    normal = -F.one_hot(axis, 3).float() * torch.where(positive, 1.0, -1.0)[..., None]
    return t, normal, axis * 2 + positive.long()


def _spheres(o: Tensor, d: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    oc = o[:, :, None] - s[:, None, :, :3]
    a = (d * d).sum(-1)[..., None]
    bq = (oc * d[:, :, None]).sum(-1)
    c = (oc * oc).sum(-1) - s[:, None, :, 3] ** 2
    disc = bq * bq - a * c
    t = (-bq - disc.clamp(min=0).sqrt()) / a
    ok = (disc > 0) & (t > 1e-4) & (s[:, None, :, 4] > 0)
    return torch.where(ok, t, torch.inf), oc


def _boxes(o: Tensor, d: Tensor, bx: Tensor) -> tuple[Tensor, Tensor]:
    cos, sin = torch.cos(bx[..., 6]), torch.sin(bx[..., 6])
    rel = o[:, :, None] - bx[:, None, :, :3]

    def to_local(v: Tensor) -> Tensor:
        c, s_ = cos[:, None], sin[:, None]
        return torch.stack((c * v[..., 0] - s_ * v[..., 2], v[..., 1], s_ * v[..., 0] + c * v[..., 2]), -1)

    lo, ld = to_local(rel), to_local(d[:, :, None].expand_as(rel))
    ld = torch.where(ld.abs() < 1e-9, torch.full_like(ld, 1e-9), ld)
    half = bx[:, None, :, 3:6]
    t1, t2 = (-half - lo) / ld, (half - lo) / ld
    t_near, axis = torch.minimum(t1, t2).max(-1)
    t_far = torch.maximum(t1, t2).min(-1).values
    ok = (t_far >= t_near) & (t_near > 1e-4) & (bx[:, None, :, 7] > 0)
    sign = -torch.sign(torch.gather(ld, -1, axis[..., None])[..., 0])
    n_local = F.one_hot(axis, 3).float() * sign[..., None]
    c, s_ = cos[:, None], sin[:, None]
    n_world = torch.stack((c * n_local[..., 0] + s_ * n_local[..., 2], n_local[..., 1], -s_ * n_local[..., 0] + c * n_local[..., 2]), -1)
    return torch.where(ok, t_near, torch.inf), n_world


def _cylinders(o: Tensor, d: Tensor, cy: Tensor) -> tuple[Tensor, Tensor]:
    ox, oz = o[:, :, None, 0] - cy[:, None, :, 0], o[:, :, None, 2] - cy[:, None, :, 1]
    dx, dz, dy = d[:, :, None, 0], d[:, :, None, 2], d[:, :, None, 1]
    r, y0, y1 = cy[:, None, :, 2], cy[:, None, :, 3], cy[:, None, :, 4]
    a = (dx * dx + dz * dz).clamp(min=1e-12)
    bq = ox * dx + oz * dz
    c = ox * ox + oz * oz - r * r
    disc = bq * bq - a * c
    t_side = (-bq - disc.clamp(min=0).sqrt()) / a
    y_side = o[:, :, None, 1] + t_side * dy
    side_ok = (disc > 0) & (t_side > 1e-4) & (y_side >= y0) & (y_side <= y1)
    safe_dy = torch.where(dy.abs() < 1e-9, torch.full_like(dy, 1e-9), dy)
    t_cap = (torch.where(dy < 0, y1, y0) - o[:, :, None, 1]) / safe_dy
    cx_, cz_ = ox + t_cap * dx, oz + t_cap * dz
    cap_ok = (t_cap > 1e-4) & (cx_ * cx_ + cz_ * cz_ <= r * r)
    t_side = torch.where(side_ok, t_side, torch.inf)
    t_cap = torch.where(cap_ok, t_cap, torch.inf)
    t = torch.minimum(t_side, t_cap)
    px, pz = ox + t_side.nan_to_num(posinf=0) * dx, oz + t_side.nan_to_num(posinf=0) * dz
    n_side = torch.stack((px / r, torch.zeros_like(px), pz / r), -1)
    n_cap = torch.zeros_like(n_side)
    n_cap[..., 1] = torch.where(dy < 0, 1.0, -1.0)
    normal = torch.where((t_cap < t_side)[..., None], n_cap, n_side)
    active = cy[:, None, :, 5] > 0
    return torch.where(active, t, torch.inf), normal


def _texture(p: Tensor, surface: Tensor, params: SceneParams) -> Tensor:
    """Solid procedural textures evaluated at world points p [B, R, 3] for surface ids [B, R]."""

    def pick(t: Tensor) -> Tensor:
        idx = surface.reshape(surface.shape + (1,) * (t.dim() - 2)).expand(surface.shape + t.shape[2:])
        return torch.gather(t, 1, idx)

    kind, colors, freq, phase = pick(params.tex_kind), pick(params.tex_colors), pick(params.tex_freq), pick(params.tex_phase)
    waves = torch.sin((freq * p[:, :, None]).sum(-1) + phase)  # [B, R, 4]
    scale = freq[:, :, 0].norm(dim=-1)[..., None]
    cells = torch.floor(p * scale * 0.5).sum(-1)
    checker = torch.remainder(cells, 2.0)
    stripes = (waves[..., 0] > 0).float()
    smooth = 0.5 + 0.25 * (waves[..., 0] + waves[..., 1] * waves[..., 2])
    grain = 0.5 + 0.5 * torch.sin(7.3 * waves[..., 0] + 5.1 * waves[..., 1] + 3.7 * waves[..., 3])
    mix = torch.stack((checker, stripes, smooth.clamp(0, 1), grain), -1).gather(-1, kind[..., None])
    return colors[..., 0, :] * (1 - mix) + colors[..., 1, :] * mix


def _occluded(params: SceneParams, points: Tensor, to_light: Tensor) -> Tensor:
    """Whether an object stands between each point [B, R, 3] and the light (a shadow ray)."""
    start = points + 1e-3 * to_light
    nearest = torch.full(points.shape[:2], torch.inf, device=points.device)
    for t_obj, _ in (
        _spheres(start, to_light, params.spheres),
        _boxes(start, to_light, params.boxes),
        _cylinders(start, to_light, params.cylinders),
    ):
        nearest = torch.minimum(nearest, t_obj.min(-1).values)
    return nearest < 1.0  # to_light spans point -> light: t in (0, 1) lies between


def cast(params: SceneParams, origins: Tensor, dirs: Tensor, shadows: bool = False) -> tuple[Tensor, Tensor]:
    """Rays [B, R, 3] -> (linear RGB [B, R, 3], hit parameter t [B, R]); dirs need not be unit.
    `shadows` traces a second ray to the light from every hit."""
    t, normal, surface = _room(origins, dirs, params.room)
    candidates = [
        (_spheres(origins, dirs, params.spheres), "sphere"),
        (_boxes(origins, dirs, params.boxes), "box"),
        (_cylinders(origins, dirs, params.cylinders), "cyl"),
    ]
    offset = ROOM_FACES
    for (t_obj, extra), kind in candidates:
        best, slot = t_obj.min(-1)
        closer = best < t
        t = torch.where(closer, best, t)
        surface = torch.where(closer, offset + slot, surface)
        if kind == "sphere":
            p = origins + best.nan_to_num(posinf=0)[..., None] * dirs
            centre = torch.gather(params.spheres[..., :3], 1, slot[..., None].expand(*slot.shape, 3))
            n = F.normalize(p - centre, dim=-1)
        else:
            n = torch.gather(extra, 2, slot[..., None, None].expand(*slot.shape, 1, 3))[:, :, 0]
        normal = torch.where(closer[..., None], n, normal)
        offset += t_obj.shape[-1]
    points = origins + t[..., None] * dirs
    albedo = _texture(points, surface, params)
    to_light = params.light[:, None] - points
    dist = to_light.norm(dim=-1, keepdim=True)
    lambert = ((normal * to_light).sum(-1, keepdim=True) / dist).clamp(min=0)
    if shadows:
        lambert = torch.where(_occluded(params, points, to_light)[..., None], 0.0, lambert)
    falloff = 6.0 / (3.0 + dist * dist)
    shade = params.ambient[:, None, None] + (1 - params.ambient[:, None, None]) * lambert * falloff.clamp(max=1.5)
    return albedo * shade, t


def render_views(params: SceneParams, c2w: Tensor, intrinsics: Tensor, image_hw: tuple[int, int], shadows: bool = False) -> SceneViews:
    """Renders cameras [B,V,3,4] (camera-to-world) into images and z-depth."""
    b, v = c2w.shape[:2]
    h, w = image_hw
    pix = pixel_grid(h, w, c2w.device).reshape(1, 1, -1, 3)
    cam_dirs = pix @ torch.linalg.inv(intrinsics).transpose(-1, -2)  # z = 1, so t is z-depth
    dirs = cam_dirs @ c2w[..., :3, :3].transpose(-1, -2)
    origins = c2w[..., None, :3, 3].expand_as(dirs)
    rgb, t = cast(params, origins.reshape(b, -1, 3), dirs.reshape(b, -1, 3), shadows)
    srgb = rgb.clamp(0, 1) ** (1 / 2.2)
    images = srgb.reshape(b, v, h, w, 3).permute(0, 1, 4, 2, 3).contiguous()
    return SceneViews(images, t.reshape(b, v, h, w), invert_rigid(c2w), intrinsics)


def generate(
    batch: int,
    views: int,
    seed: int,
    image_hw: tuple[int, int],
    device: torch.device | str = "cpu",
    trajectory: str | None = None,
) -> SceneViews:
    """`batch` random scenes with `views` cameras each."""
    params = sample_scenes(batch, seed, device)
    c2w, k = sample_cameras(params, views, seed, image_hw, trajectory)
    return render_views(params, c2w, k, image_hw)
