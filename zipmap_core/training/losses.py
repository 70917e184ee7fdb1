"""Training losses of the paper: camera pose encoding, confidence-weighted depth with a gradient
term, camera-frame points, and novel-view RGB and depth for the state-query head.

All targets are in the normalised scene frame (`synthetic.normalise`): cameras relative to input
frame 0, lengths divided by the largest camera translation component.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pose_loss(pred_list: list[Tensor], target: Tensor, gamma: float = 0.6) -> tuple[Tensor, dict[str, Tensor]]:
    """Iterative camera-head refinements, later iterations weighted more (gamma^(n-1-i)).
    Encodings [B, S, 9]: translation, quaternion, field of view; Huber on each part."""
    n = len(pred_list)
    total = target.new_zeros(())
    parts = {"T": target.new_zeros(()), "R": target.new_zeros(()), "fov": target.new_zeros(())}
    for i, pred in enumerate(pred_list):
        w = gamma ** (n - 1 - i)
        pred = pred.float()
        t = torch.nn.functional.huber_loss(pred[..., :3], target[..., :3], delta=0.1)
        # q and -q are the same rotation: take the closer sign per camera
        q_err = torch.minimum((pred[..., 3:7] - target[..., 3:7]).abs().sum(-1), (pred[..., 3:7] + target[..., 3:7]).abs().sum(-1)).mean()
        f = torch.nn.functional.huber_loss(pred[..., 7:], target[..., 7:], delta=0.1)
        total = total + w * (t + q_err + 0.5 * f)
        if i == n - 1:
            parts = {"T": t.detach(), "R": q_err.detach(), "fov": f.detach()}
    return total / n, parts


def _gradient_error(err: Tensor) -> Tensor:
    """Mean absolute spatial gradient of an error map [..., H, W, C] (sharp edges, flat planes)."""
    gx = (err[..., :, 1:, :] - err[..., :, :-1, :]).abs()
    gy = (err[..., 1:, :, :] - err[..., :-1, :, :]).abs()
    return gx.mean() + gy.mean()


def confidence_loss(pred: Tensor, target: Tensor, conf: Tensor | None, alpha: float = 0.2, grad_weight: float = 1.0) -> Tensor:
    """pred/target [B, S, H, W, C], conf [B, S, H, W] (>= 1) or None.

    conf * |error| - alpha * log(conf): the network learns where it is unsure instead of being
    dragged by hard pixels; plus the same weighting on the error's spatial gradient."""
    err = pred.float() - target
    abs_err = err.abs().sum(-1)
    if conf is None:
        return abs_err.mean() + grad_weight * _gradient_error(err)
    conf = conf.float()
    data = (conf * abs_err).mean() - alpha * torch.log(conf).mean()
    grad = _gradient_error(err * conf[..., None].sqrt().detach())
    return data + grad_weight * grad


def rgb_loss(pred: Tensor, target: Tensor) -> Tensor:
    """pred/target [B, S, H, W, 3] in [0, 1]: L1 plus gradient L1 (keeps texture edges)."""
    err = pred.float() - target
    return err.abs().mean() + _gradient_error(err)
