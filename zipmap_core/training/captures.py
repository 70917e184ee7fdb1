"""Scenes closer to what users capture, for training a model that reconstructs what it is shown:
more and smaller objects, finer textures, shadows, and handheld camera paths (walking forward,
panning on the spot, orbiting) with small baselines and varied fields of view. The classic family (`synthetic.generate`) stays as
it was: the shipped model and its tests are measured on it."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .synthetic import (
    SceneParams,
    SceneViews,
    centred_intrinsics,
    look_at_batch,
    render_views,
    sample_cameras,
    sample_scenes,
    uniform_sampler,
)

HANDHELD = ("walk", "pan", "orbit")


def handheld_cameras(
    params: SceneParams, views: int, seed: int, image_hw: tuple[int, int], kind: str | None = None
) -> tuple[Tensor, Tensor]:
    """Per scene `views` cameras along a handheld path -> (camera-to-world [B,V,3,4], K [B,V,3,3]).
    walk: forward steps of a few centimetres with head bob and small turns; pan: the camera
    turns on the spot (baseline of a hand's width); orbit: the classic orbit, at a closer range."""
    device = params.room.device
    b = params.room.shape[0]
    g = torch.Generator().manual_seed(seed + 104729)
    u = uniform_sampler(g, device)
    kinds = torch.full((b,), HANDHELD.index(kind), device=device) if kind else (u(b) * len(HANDHELD)).long().clamp(max=len(HANDHELD) - 1)
    steps = torch.arange(views, device=device, dtype=torch.float32)[None] / max(views - 1, 1)
    heading = u(b, 1, hi=2 * math.pi)
    reach = params.cam_radius[:, None]
    start = torch.stack((torch.cos(heading) * reach * 0.9, u(b, 1, lo=1.2, hi=1.7), torch.sin(heading) * reach * 0.9), -1)
    inward = -torch.stack((torch.cos(heading), torch.zeros_like(heading), torch.sin(heading)), -1)
    # walk: forward along the inward direction, stopping 0.4 m short of where objects may stand
    # (within half the camera radius), with bob and sway
    walk_len = u(b, 1, lo=0.3, hi=1.0) * (0.4 * reach - 0.4).clamp(min=0.1)
    bob = 0.02 * torch.sin(steps * u(b, 1, lo=8, hi=14)) + u(b, views, lo=-0.01, hi=0.01)
    walk_eye = start + inward * (walk_len * steps)[..., None] + torch.stack((torch.zeros_like(bob), bob, torch.zeros_like(bob)), -1)
    turn = (steps - 0.5) * u(b, 1, lo=-0.5, hi=0.5)  # radians over the walk
    walk_dir = torch.stack(
        (torch.cos(heading + math.pi + turn), -0.15 + u(b, views, lo=-0.03, hi=0.03), torch.sin(heading + math.pi + turn)), -1
    )
    # pan: on the spot, sweeping 40-120 degrees, the hand moving a few centimetres
    sweep = (steps - 0.5) * u(b, 1, lo=0.7, hi=2.1)
    pan_eye = start + u(b, views, 3, lo=-0.03, hi=0.03)
    pan_dir = torch.stack(
        (torch.cos(heading + math.pi + sweep), -0.1 + u(b, views, lo=-0.05, hi=0.05), torch.sin(heading + math.pi + sweep)), -1
    )
    forward_eye = torch.where(kinds[:, None, None] == 0, walk_eye, pan_eye)
    forward_dir = torch.where(kinds[:, None, None] == 0, walk_dir, pan_dir)
    c2w = look_at_batch(forward_eye, forward_eye + forward_dir)
    orbit_c2w, _ = sample_cameras(params, views, seed, image_hw, "orbit")
    c2w = torch.where(kinds[:, None, None, None] == 2, orbit_c2w, c2w)
    # a phone-like field of view, 40-80 degrees vertically, one per path
    return c2w, centred_intrinsics(torch.deg2rad(u(b, 1, lo=40.0, hi=80.0)).expand(b, views), image_hw)


def generate_captures(
    batch: int, views: int, seed: int, image_hw: tuple[int, int], device: torch.device | str = "cpu", kind: str | None = None
) -> SceneViews:
    """`batch` capture-like scenes with `views` handheld cameras each: 6 objects of each kind at
    0.6x the classic size, textures up to 30 cycles per metre, shadows."""
    params = sample_scenes(batch, seed, device, slots=6, size=0.6, freq_hi=30.0)
    c2w, k = handheld_cameras(params, views, seed, image_hw, kind)
    return render_views(params, c2w, k, image_hw, shadows=True)
