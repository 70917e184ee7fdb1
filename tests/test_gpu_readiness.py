"""What the GPU path needs and a CPU can check (issue 19): no host synchronisation in the trunk's
loop, the scene state kept on the device between renders, camera paths rendered in batches, and
no float64 where Apple's MPS has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_runs import small_run

from zipmap_core.model.config import tiny_config
from zipmap_core.model.heads import dpt_head
from zipmap_core.model.rope import RotaryEmbedding2D, patch_positions, position_limit
from zipmap_core.model.zipmap import ZipMap
from zipmap_core.pipeline import camera_path
from zipmap_core.pipeline.camera_path import orbit_path, render_path
from zipmap_core.pipeline.reconstructor import Reconstructor

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "resources" / "samples" / "images").glob("*.png"))


@pytest.fixture(scope="module")
def rec_and_scene():
    torch.manual_seed(3)
    rec = Reconstructor(ZipMap(tiny_config()).eval(), "cpu")
    return rec, rec.reconstruct(SAMPLES[:4])


def test_the_trunk_never_reads_positions_back_from_the_device(monkeypatch, tiny_model):
    model = tiny_model
    images = torch.rand(1, 3, 3, 56, 56)
    with torch.no_grad():
        expected = model(images, window_size=0, chunk_frames=1).depth

    def no_sync(self, *args, **kwargs):
        raise AssertionError("a .max() in the loop: a device-to-host copy per chunk on a GPU")

    monkeypatch.setattr(torch.Tensor, "max", no_sync)
    with torch.no_grad():
        depth = model(images, window_size=0, chunk_frames=1).depth
    torch.testing.assert_close(depth, expected, rtol=0, atol=0)


def test_rope_with_a_known_limit_equals_the_measured_one():
    rope = RotaryEmbedding2D(100.0)
    pos = patch_positions(2, 3, 5, 5, torch.device("cpu"))
    x = torch.randn(2, 4, pos.shape[1], 16)
    assert position_limit(3, 5) == int(pos.max()) + 1
    torch.testing.assert_close(rope(x, pos, position_limit(3, 5)), rope(x, pos), rtol=0, atol=0)


def test_the_scene_state_stays_on_the_device_between_renders(rec_and_scene, monkeypatch):
    rec, recon = rec_and_scene
    uploads = []
    real = torch.as_tensor
    monkeypatch.setattr(torch, "as_tensor", lambda *a, **k: (uploads.append(1), real(*a, **k))[1])
    poses = orbit_path(recon, 2)
    k = recon.intrinsics[:2]
    first = rec.render_views(recon, poses, k)
    per_scene = len(uploads)
    second = rec.render_views(recon, poses, k)
    np.testing.assert_array_equal(first.rgb, second.rgb)
    state_tensors = 3 * len(recon.state)
    assert per_scene >= state_tensors and len(uploads) - per_scene < state_tensors, "the state was uploaded again"
    other = type(recon)(
        **{
            **{
                f: getattr(recon, f)
                for f in ("names", "images", "extrinsics", "intrinsics", "depth", "depth_conf", "points_cam", "points_world", "original_wh")
            },
            "state": [dict(layer) for layer in recon.state],
            "state_scale": recon.state_scale,
        }
    )
    before = len(uploads)
    rec.render_views(other, poses, k)
    assert len(uploads) - before >= state_tensors, "another scene's state must be uploaded"


def test_camera_paths_render_in_batches_with_the_same_pixels(rec_and_scene, tmp_path, monkeypatch):
    rec, recon = rec_and_scene
    poses = orbit_path(recon, 10)
    calls = []
    real = rec.render_views
    monkeypatch.setattr(rec, "render_views", lambda r, c2w, *a, **k: (calls.append(len(c2w)), real(r, c2w, *a, **k))[1])
    folder = render_path(rec, recon, poses, recon.intrinsics[0], recon.image_hw, tmp_path / "path")
    assert calls == [camera_path.RENDER_BATCH, 10 - camera_path.RENDER_BATCH]
    one = real(recon, poses[9:10], recon.intrinsics[:1])
    saved = np.load(folder / "frames" / "frame_0009_depth.npy")
    np.testing.assert_allclose(saved, one.depth[0], rtol=1e-4, atol=1e-5)  # batched = one at a time
    assert len(list((folder / "frames").glob("frame_*_depth.npy"))) == 10


def test_no_float64_on_apples_mps(monkeypatch):
    assert dpt_head.wide_float(torch.device("mps")) == torch.float32
    assert dpt_head.wide_float(torch.device("cpu")) == torch.float64
    values = torch.linspace(-0.9, 0.9, 257)
    wide = dpt_head._sincos(values, 64)
    monkeypatch.setattr(dpt_head, "wide_float", lambda device: torch.float32)
    narrow = dpt_head._sincos(values, 64)
    torch.testing.assert_close(narrow, wide, rtol=0, atol=2e-6)


# ---- training that fits: activation checkpointing, fp16 with loss scaling ------------------------------
def test_activation_checkpointing_gives_the_same_gradients():
    from zipmap_core.training.synthetic import generate
    from zipmap_core.training.trainer import compute_losses

    torch.manual_seed(0)
    model = ZipMap(tiny_config())
    views = generate(2, 4, 7, (28, 56), torch.device("cpu"))
    grads = []
    for remat in (False, True):
        model.set_activation_checkpointing(remat)
        model.zero_grad(set_to_none=True)
        total, _ = compute_losses(model, views, 3, {})
        total.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_checkpointing_recomputes_blocks_in_the_backward_pass(monkeypatch):
    from zipmap_core.model import transformer

    calls = []
    real = transformer.checkpointed
    monkeypatch.setattr(transformer, "checkpointed", lambda block, *a: (calls.append(type(block).__name__), real(block, *a))[1])
    from zipmap_core.model import aggregator, encoder

    monkeypatch.setattr(aggregator, "checkpointed", transformer.checkpointed)
    monkeypatch.setattr(encoder, "checkpointed", transformer.checkpointed)
    model = ZipMap(tiny_config())
    model.set_activation_checkpointing(True)
    model(torch.rand(1, 2, 3, 28, 28), window_size=0).depth.sum().backward()
    assert {"Block", "GlobalBlock"} <= set(calls)
    calls.clear()
    with torch.no_grad():  # inference never pays for it
        model(torch.rand(1, 2, 3, 28, 28), window_size=0)
    assert calls == []


def test_fp16_training_scales_the_loss_and_gpus_without_bf16_get_it(tmp_path, monkeypatch):
    from zipmap_core import device as device_module
    from zipmap_core.training.trainer import Trainer

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a pre-sm80 GPU
    assert device_module.training_half(torch.device("cuda"), "auto") == torch.float16
    assert device_module.needs_loss_scaling(torch.device("cuda"), "auto")
    assert device_module.training_half(torch.device("cpu"), "auto") is None
    cfg = small_run(
        str(tmp_path / "run"), heights=(28,), width=56, precision="fp16", activation_checkpointing=True, log_every=1, save_every=100
    )
    trainer = Trainer(cfg, log=lambda line: None)
    assert trainer.scaler.is_enabled() and trainer.model.aggregator.checkpointing
    first = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    scale = trainer.scaler.get_scale()
    stats = []
    while len(stats) < 30 and all(torch.equal(first[n], p) for n, p in trainer.model.named_parameters()):
        stats.append(trainer.train_step())  # steps whose scaled gradients overflow are skipped...
    assert all(np.isfinite(s["loss"]) for s in stats)
    moved = sum(not torch.equal(first[n], p) for n, p in trainer.model.named_parameters())
    assert moved > 10, "the fp16 steps must update the weights"
    assert trainer.scaler.get_scale() <= scale  # ...and lower the scale until they do not


# ---- the GPU benchmark's harness, on a small configuration ---------------------------------------------
FAKE_REFERENCE = """
import torch
from torch import nn


class ZipMap(nn.Module):  # stands in for the authors' class: same constructor and call
    def __init__(self, img_size=518, patch_size=14, embed_dim=1024, **kwargs):
        super().__init__()
        assert kwargs["ttt_config"]["params"]["head_dim"] == 1024 and kwargs["other_config"]["affine_invariant"]
        self.proj = nn.Linear(3, 8)

    def forward(self, images, query_info=None, store_state=False):
        return {"depth": self.proj(images.mean(dim=(-1, -2)))}
"""


def test_bench_gpu_times_ours_and_a_reference_the_same_way(tmp_path):
    import json

    from zipmap_core import cli

    package = tmp_path / "reference" / "zipmap" / "models"
    package.mkdir(parents=True)
    for folder in (package.parent, package):
        (folder / "__init__.py").write_text("")
    (package / "ZipMap.py").write_text(FAKE_REFERENCE)
    code = cli.main(
        [
            "bench",
            "gpu",
            "--config",
            "small",
            "--frames",
            "2,3",
            "--size",
            "56",
            "--height",
            "42",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "--reference",
            str(tmp_path / "reference"),
            "-o",
            str(tmp_path),
        ]
    )
    result = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert code == 0 and result["device_name"] == "cpu" and [r["frames"] for r in result["rows"]] == [2, 3]
    row = result["rows"][-1]
    assert row["ours"]["fps"] > 0 and row["reference"]["fps"] > 0 and result["query_ms"] > 0
    assert result["ratio_vs_reference"] == pytest.approx(row["ours"]["fps"] / row["reference"]["fps"])
    assert (
        cli.main(
            [
                "bench",
                "gpu",
                "--config",
                "small",
                "--frames",
                "2",
                "--size",
                "56",
                "--height",
                "42",
                "--reference",
                str(tmp_path),
                "-o",
                str(tmp_path),
            ]
        )
        == 2
    )  # not the authors' folder: one line


def test_compiled_ttt_kernels_give_the_eager_outputs_and_fall_back_where_compiling_fails(monkeypatch):
    """torch.compile'd gradient and apply chains (inductor, here on the CPU's C++ compiler):
    the same outputs as eager within float32 reordering; a compiler that fails leaves the eager
    code running, with one warning."""
    from zipmap_core.model import ttt

    monkeypatch.setattr(ttt, "COMPILED", ttt._Compiled())
    torch.manual_seed(0)
    model = ZipMap(tiny_config()).eval()
    images = torch.rand(1, 3, 3, 28, 42)
    with torch.no_grad():
        eager = model(images, window_size=0, chunk_frames=2)
        model.set_compiled_kernels(True)
        compiled = model(images, window_size=0, chunk_frames=2)
        again = model(images[:, :2], window_size=0)  # another token count: no recompilation needed (dynamic)
    assert set(ttt.COMPILED.functions) == {"fast_weight_gradients", "swiglu"} and ttt.COMPILED.failed is None
    for key in ("depth", "pose_enc"):
        torch.testing.assert_close(getattr(compiled, key), getattr(eager, key), rtol=1e-4, atol=1e-5)
    assert again.depth.shape[1] == 2

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no compiler here")

        return call

    monkeypatch.setattr(ttt, "COMPILED", ttt._Compiled())
    monkeypatch.setattr(torch, "compile", broken)
    with torch.no_grad(), pytest.warns(UserWarning, match="running them eagerly"):
        fallback = model(images, window_size=0, chunk_frames=2)
    assert "no compiler here" in ttt.COMPILED.failed
    torch.testing.assert_close(fallback.depth, eager.depth, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a lent H100/H200: pytest -m gpu)")
def test_full_size_bf16_on_the_gpu_matches_float32_on_the_cpu():
    """The official layout with random weights: bf16 autocast on CUDA against float32 on the CPU."""
    from zipmap_core.model.config import get_config

    torch.manual_seed(0)
    model = ZipMap(get_config("aff_inv")).eval()
    images = torch.rand(1, 4, 3, 294, 518)
    with torch.inference_mode():
        cpu = model(images, window_size=0, point_head=False)
        gpu_model = model.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            gpu = gpu_model(images.cuda(), window_size=0, point_head=False)
    rel = ((gpu.depth.float().cpu() - cpu.depth).norm() / cpu.depth.norm()).item()
    assert rel < 2e-2, f"bf16 depth differs from float32 by {rel:.3g} (relative)"


def test_chunks_follow_the_free_memory_of_a_gpu_and_stay_small_on_a_cpu(rec_and_scene):
    from zipmap_core.device import chunk_frames_for

    cuda = torch.device("cuda")  # only its type is read when the free memory is given
    full = dict(frames=750, tokens_per_frame=28 * 37 + 5, dim=1024)
    big = chunk_frames_for(cuda, free_bytes=60 * 2**30, **full)
    small = chunk_frames_for(cuda, free_bytes=2 * 2**30, **full)
    assert 500 < big <= 750 and 10 < small < 30 and chunk_frames_for(cuda, free_bytes=1, **full) == 1
    assert chunk_frames_for(cuda, free_bytes=2**40, **full) == 750
    assert chunk_frames_for(torch.device("cpu"), **full) == 1  # a 1041-token frame at a time: one frame's working set
    assert chunk_frames_for(torch.device("cpu"), frames=750, tokens_per_frame=69, dim=128) == 8  # small frames: 8 at a time
    rec, _ = rec_and_scene
    assert rec.chunk_for(torch.zeros(20, 3, 56, 56)) == 8 and rec.chunk_for(torch.zeros(3, 3, 56, 56)) == 3


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a lent H100/H200: pytest -m gpu)")


@pytest.mark.gpu
@GPU
def test_full_size_state_query_render_on_the_gpu_matches_the_cpu():
    from zipmap_core.model.config import get_config
    from zipmap_core.model.geometry import intrinsics_from_fov, ray_conditions

    torch.manual_seed(0)
    model = ZipMap(get_config("state_query")).eval()
    images = torch.rand(1, 2, 3, 168, 224)
    rays = ray_conditions(torch.eye(4)[None, None, :3], intrinsics_from_fov(60, (168, 224))[None, None], (168, 224))
    with torch.inference_mode():
        cpu_states = model(images, window_size=0, point_head=False).states
        cpu_rgbd, _ = model.render(rays, cpu_states)
        gpu_model = model.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            states = gpu_model(images.cuda(), window_size=0, point_head=False).states
            rgbd, _ = gpu_model.render(rays.cuda(), states)
    rel = ((rgbd.float().cpu() - cpu_rgbd).norm() / cpu_rgbd.norm()).item()
    assert rel < 3e-2, f"bf16 render differs from float32 by {rel:.3g}"


@pytest.mark.gpu
@GPU
def test_streaming_on_the_gpu_equals_its_windowed_batch():
    from zipmap_core.model.config import get_config

    torch.manual_seed(0)
    model = ZipMap(get_config("online")).eval().cuda()
    images = torch.rand(1, 4, 3, 168, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        batch = model(images, window_size=2, point_head=False)
        first = model(images[:, :2], window_size=2, point_head=False)
        second = model(images[:, 2:], states=first.states, window_size=2, point_head=False)
    streamed = torch.cat((first.depth, second.depth), dim=1).float()
    rel = ((streamed - batch.depth.float()).norm() / batch.depth.float().norm()).item()
    assert rel < 3e-2, f"streamed depth differs from the windowed batch by {rel:.3g}"


@pytest.mark.gpu
@GPU
def test_one_fine_tuning_step_of_the_full_model_at_518_px_fits_80_gb(tmp_path):
    from zipmap_core.training.trainer import Trainer

    torch.cuda.reset_peak_memory_stats()
    cfg = small_run(
        str(tmp_path / "run"),
        model="state_query",
        steps=1,
        batch=2,
        views=(8, 8),
        held_out=2,
        heights=(294,),
        width=518,
        device="cuda",
        precision="auto",
        activation_checkpointing=True,
        log_every=1,
        save_every=100,
    )
    trainer = Trainer(cfg, log=lambda line: None)
    stats = trainer.train_step()
    peak = torch.cuda.max_memory_allocated() / 2**30
    assert np.isfinite(stats["loss"]) and np.isfinite(stats["grad_norm"])
    assert peak < 80, f"peak {peak:.1f} GB: does not fit one 80 GB GPU"
