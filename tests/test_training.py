"""Our own model: the scene generator, the training pipeline and the shipped model's quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from golden import golden_model
from train_runs import small_run

from zipmap_core import cli
from zipmap_core.io import checkpoints
from zipmap_core.io.checkpoints import load_checkpoint, save_model
from zipmap_core.metrics import pose_metrics, umeyama
from zipmap_core.model.config import get_config, tiny_config
from zipmap_core.model.geometry import camera_to_world, depth_to_camera_points
from zipmap_core.model.zipmap import ZipMap
from zipmap_core.pipeline.reconstructor import Reconstructor
from zipmap_core.resources import BUNDLED_MODEL
from zipmap_core.training.evaluation import evaluate_scene
from zipmap_core.training.normalisation import normalise
from zipmap_core.training.scene_folders import read_ground_truth
from zipmap_core.training.synthetic import SceneViews, generate
from zipmap_core.training.trainer import TrainConfig, Trainer, build_model, compute_losses

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples"


def test_generator_is_deterministic_and_geometrically_exact():
    a = generate(2, 3, 11, (42, 56))
    b = generate(2, 3, 11, (42, 56))
    assert torch.equal(a.images, b.images) and torch.equal(a.depth, b.depth)
    assert not torch.equal(a.images, generate(2, 3, 12, (42, 56)).images)
    # a pixel's world point, seen from another camera, projects where that camera's depth agrees
    pts = camera_to_world(depth_to_camera_points(a.depth[0, :1], a.intrinsics[0, :1]), a.extrinsics[0, :1])[0]
    cam = pts.reshape(-1, 3) @ a.extrinsics[0, 1, :, :3].T + a.extrinsics[0, 1, :, 3]
    uv = cam[:, :2] / cam[:, 2:] * torch.stack((a.intrinsics[0, 1, 0, 0], a.intrinsics[0, 1, 1, 1])) + a.intrinsics[0, 1, :2, 2]
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    ok = (cam[:, 2] > 0) & (u >= 1) & (u < 55) & (v >= 1) & (v < 41)
    seen = a.depth[0, 1][v[ok], u[ok]]
    visible = (cam[ok, 2] - seen).abs() / seen < 0.02
    assert visible.float().mean() > 0.3  # many points are visible, and where visible the depths agree


def test_normalisation_puts_frame_zero_at_identity_and_unit_translation():
    views, scale = normalise(generate(3, 5, 2, (28, 28)), inputs=4)
    np.testing.assert_allclose(views.extrinsics[:, 0].numpy(), np.tile(np.eye(4)[:3], (3, 1, 1)), atol=1e-4)
    c2w_t = -torch.einsum("bsji,bsj->bsi", views.extrinsics[:, :4, :, :3], views.extrinsics[:, :4, :, 3])
    np.testing.assert_allclose(c2w_t.abs().flatten(1).max(1).values.numpy(), 1.0, rtol=1e-4)
    assert (scale > 0).all()


def test_training_a_tiny_model_lowers_the_loss(tmp_path):
    cfg = small_run(str(tmp_path / "run"), steps=40, batch=2, views=(3, 3), lr=2e-3, warmup=5, log_every=10, save_every=20)
    trainer = Trainer(cfg, log=lambda *_: None)
    fixed = [generate(2, 4, 900 + i, (56, 112)) for i in range(2)]

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(np.mean([compute_losses(trainer.model, v, 3, cfg.loss_weights)[0] for v in fixed]))

    before = held_out_loss()
    history = trainer.run()
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)
    assert len(history) == 40 and (tmp_path / "run" / "model.safetensors").exists()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 40 and {"camera", "depth", "points", "nvs_rgb", "nvs_depth"} <= set(log[-1])
    # resuming continues from the saved step with the optimiser state
    cfg2 = TrainConfig(**{**cfg.__dict__, "steps": 42})
    resumed = Trainer(cfg2, log=lambda *_: None)
    assert resumed.step == 40 and len(resumed.opt.state) > 0
    # fine-tuning from the saved file counts its steps too
    tuned = TrainConfig(
        **{
            **cfg.__dict__,
            "init": str(tmp_path / "run" / "model.safetensors"),
            "output": str(tmp_path / "tuned"),
            "steps": 2,
            "save_every": 2,
        }
    )
    Trainer(tuned, log=lambda *_: None).run()
    loaded = load_checkpoint(tmp_path / "tuned" / "model.safetensors")
    assert loaded.metadata["train_steps"] == "42" and "42 steps (40 before fine-tuning)" in loaded.description


def test_fine_tuning_an_official_checkpoint_takes_the_same_path_and_keeps_its_origin(tmp_path, monkeypatch):
    official, _, _ = golden_model("state_query")  # the authors' architecture, at the parity vectors' size
    pt = tmp_path / "checkpoint_state_query.pt"
    torch.save({"model": official.state_dict()}, pt)  # their file format
    monkeypatch.setitem(checkpoints.OFFICIAL_CONFIGS, "state_query", official.cfg)  # the published size, shrunk
    cfg = TrainConfig(
        init=str(pt),
        output=str(tmp_path / "tuned"),
        steps=3,
        batch=1,
        views=(2, 2),
        held_out=1,
        heights=(84,),
        width=112,
        lr=1e-4,
        warmup=1,
        save_every=3,
        device="cpu",
    )
    trainer = Trainer(cfg, log=lambda *_: None)
    history = trainer.run()
    assert {"camera", "depth", "points", "nvs_rgb", "nvs_depth"} <= set(history[-1])
    assert all(np.isfinite(h["loss"]) for h in history)
    tuned = load_checkpoint(tmp_path / "tuned" / "model.safetensors")
    assert tuned.variant == "state_query" and tuned.model.cfg == official.cfg and tuned.model.can_render
    assert tuned.description == "official ZipMap checkpoint (state_query), fine-tuned 3 steps on procedural scenes"
    moved = [k for k, v in official.state_dict().items() if not torch.equal(v, tuned.model.state_dict()[k])]
    assert len(moved) > 0.5 * len(official.state_dict())
    # fine-tuning the fine-tuned file again still names the official origin and counts all steps
    again = TrainConfig(
        **{
            **cfg.__dict__,
            "init": str(tmp_path / "tuned" / "model.safetensors"),
            "output": str(tmp_path / "again"),
            "steps": 1,
            "save_every": 1,
        }
    )
    Trainer(again, log=lambda *_: None).run()
    assert load_checkpoint(tmp_path / "again" / "model.safetensors").description.endswith("fine-tuned 4 steps on procedural scenes")


def test_bf16_mixed_precision_path_trains_on_the_cpu_too(tmp_path):
    cfg = small_run(str(tmp_path / "bf16"), steps=3, lr=1e-3, warmup=1, save_every=3, precision="bf16")
    trainer = Trainer(cfg, log=lambda *_: None)
    seen = []
    # the trunk runs in bf16 (the heads in float32, as in the reference)
    hook = trainer.model.aggregator.frame_blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype == torch.bfloat16))
    history = trainer.run()
    hook.remove()
    assert seen and all(seen), "the step did not run under bf16 autocast"
    assert all(np.isfinite(h["loss"]) for h in history)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay float32
    with pytest.raises(ValueError, match="precision 'fp8'"):
        Trainer(TrainConfig(**{**cfg.__dict__, "precision": "fp8", "output": str(tmp_path / "x")}), log=lambda *_: None)


def test_train_cli_reads_a_config_file_and_its_overrides(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {"model": "tiny", "batch": 1, "views": [2, 2], "held_out": 1, "heights": [56], "warmup": 1, "steps": 50, "save_every": 100}
        )
    )
    out = tmp_path / "run"
    assert cli.main(["train", str(config), "-o", str(out), "--steps", "2", "--device", "cpu", "--precision", "bf16"]) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["steps"] == 2 and saved["precision"] == "bf16" and saved["model"] == "tiny"
    assert load_checkpoint(out / "model.safetensors").metadata["train_steps"] == "2"
    assert "after 2 steps" in capsys.readouterr().out
    config.write_text(json.dumps({"modle": "tiny"}))
    capsys.readouterr()
    assert cli.main(["train", str(config), "-o", str(out)]) == 2  # a user error: said in one line, no traceback
    err = capsys.readouterr().err
    assert "unknown training settings" in err and "modle" in err


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.json")), ids=lambda p: p.name)
def test_shipped_training_configs_are_valid(config):
    cfg = TrainConfig.from_file(config)
    assert cfg.precision in ("auto", "bf16", "float32") and cfg.views[0] <= cfg.views[1]
    w = cfg.width or 518
    assert w % 14 == 0 and all(h % 14 == 0 for h in cfg.heights)
    if cfg.init is None:
        get_config(cfg.model)  # a known configuration name


def test_init_scale_rescales_matching_weights_of_the_init_file_only(tmp_path):
    torch.manual_seed(0)
    init = save_model(ZipMap(tiny_config()), tmp_path / "init.safetensors")
    pattern = "aggregator.global_blocks.*.ls1.gamma"
    cfg = TrainConfig(model="tiny", init=str(init), init_scale={pattern: 10.0}, output=str(tmp_path / "run"), device="cpu")
    scaled = Trainer(cfg, log=lambda *_: None).model.state_dict()
    original = load_checkpoint(init).model.state_dict()
    changed = {name for name in original if not torch.equal(original[name], scaled[name])}
    assert changed == {f"aggregator.global_blocks.{i}.ls1.gamma" for i in range(len(ZipMap(tiny_config()).aggregator.global_blocks))}
    name = "aggregator.global_blocks.0.ls1.gamma"
    assert torch.allclose(scaled[name], 10.0 * original[name])
    with pytest.raises(ValueError, match="matches no parameter"):
        Trainer(TrainConfig(**{**cfg.__dict__, "init_scale": {"aggregator.global_block.*.gamma": 2.0}}), log=lambda *_: None)
    with pytest.raises(ValueError, match="has no init"):
        Trainer(TrainConfig(**{**cfg.__dict__, "init": None}), log=lambda *_: None)


def test_trainable_globs_freeze_everything_else(tmp_path):
    cfg = small_run(
        str(tmp_path / "part"), lr=1e-3, warmup=1, save_every=2, trainable=["nvs_head.*", "aggregator.global_blocks.*.ttt_block.*"]
    )
    trainer = Trainer(cfg, log=lambda *_: None)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    after = trainer.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("nvs_head.") or ".ttt_block." in k for k in moved)
    assert any(k.startswith("nvs_head.") for k in moved) and any(".ttt_block." in k for k in moved)
    assert trainer.trainable_parameters == sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=r"trainable pattern 'nvs_heads\.\*' matches no parameter"):
        Trainer(TrainConfig(**{**cfg.__dict__, "trainable": ["nvs_heads.*"]}), log=lambda *_: None)


def test_probe_sees_cross_view_mixing_only_where_the_global_layers_carry_it(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe_model", ROOT / "benchmarks" / "probe_model.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    torch.manual_seed(0)
    model = ZipMap(tiny_config())
    with torch.no_grad():  # untrained LayerScale is tiny; make the global branch count
        for block in model.aggregator.global_blocks:
            block.ls1.gamma.fill_(1.0)
    mixing = probe.probe(str(save_model(model, tmp_path / "mixing.safetensors")), scenes=1)
    with torch.no_grad():  # the TTT branch silenced: every frame and every query stands alone
        for block in model.aggregator.global_blocks:
            block.ls1.gamma.zero_()
    alone = probe.probe(str(save_model(model, tmp_path / "alone.safetensors")), scenes=1)
    # an untrained model mixes a little (about 5e-4 in depth, 1e-4 in novel RGB); none is none
    assert mixing["depth_change_when_other_frames_swapped"] > 1e-5
    assert mixing["novel_rgb_change_between_two_scene_states"] > 1e-6
    assert alone["depth_change_when_other_frames_swapped"] < 1e-7
    assert alone["novel_rgb_change_between_two_scene_states"] < 1e-7


def test_squared_rgb_term_is_opt_in_and_is_the_mean_squared_error():
    torch.manual_seed(0)
    model = ZipMap(tiny_config()).eval()
    views = generate(1, 4, 77, (56, 112))
    weights = TrainConfig().loss_weights
    with torch.no_grad():
        base_total, base = compute_losses(model, views, 3, weights)
        torch.manual_seed(0)
        total, parts = compute_losses(model, views, 3, {**weights, "nvs_rgb_mse": 10.0})
    assert "nvs_rgb_mse" not in base and weights["nvs_rgb_mse"] == 0.0
    assert 0 < parts["nvs_rgb_mse"] < parts["nvs_rgb"]  # squared errors of values in [0, 1]
    assert float(total - base_total) == pytest.approx(10.0 * parts["nvs_rgb_mse"], rel=1e-4)


def test_pose_metrics_and_umeyama_are_exact_on_known_transforms():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(100, 3))
    from scipy.spatial.transform import Rotation

    r = Rotation.random(random_state=1).as_matrix()
    s, rot, t = umeyama(src, 2.5 * src @ r.T + [1, 2, 3])
    assert s == pytest.approx(2.5) and np.allclose(rot, r) and np.allclose(t, [1, 2, 3])
    poses = np.stack([np.concatenate((Rotation.random(random_state=i).as_matrix(), rng.normal(size=(3, 1))), 1) for i in range(4)])
    perfect = pose_metrics(poses, poses)
    assert perfect["RRA@5"] == 1.0 and perfect["RTA@5"] == 1.0 and perfect["AUC@30"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def bundled_scores():
    assert BUNDLED_MODEL.exists(), f"the bundled model {BUNDLED_MODEL} is missing"
    return evaluate_scene(Reconstructor.bundled("cpu"), SAMPLE)


def test_bundled_model_reconstructs_the_sample_scene(bundled_scores):
    s = bundled_scores
    print({k: round(v, 3) for k, v in s.items()})
    assert s["depth_absrel"] < BUNDLED_LIMITS["depth_absrel"]
    assert s["rot_err_median_deg"] < BUNDLED_LIMITS["rot_err_median_deg"]
    # identity cameras score 0 on translation; a model that recovers no motion would too
    assert s["RTA@30"] > s["baseline_identity_RTA@30"] + 0.1


def test_bundled_model_novel_view_beats_the_point_cloud_fallback(bundled_scores):
    s = bundled_scores
    assert s["novel_psnr"] > s["baseline_pointcloud_novel_psnr"] + BUNDLED_LIMITS["novel_psnr_gain_db"]


def test_eval_cli_prints_table_with_baselines_and_writes_json(tmp_path, capsys):
    assert cli.main(["eval", str(SAMPLE), "--device", "cpu", "--json", str(tmp_path / "e.json"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "constant depth" in out and "identity cameras" in out and "mean colour" in out
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["scenes"] == 1 and "depth_absrel" in data["mean"]
    gt = read_ground_truth(SAMPLE)
    assert len(gt.input_names) == 16 and gt.held_out == 2


# Regression guards the shipped model meets with margin on the sample scene (measured: depth AbsRel
# 0.51, median rotation error 46.1 degrees, RTA@30 0.48, novel view 2.9 dB above the point-cloud fallback; see
# resources/MODEL_CARD.md). They are far from the targets, which this CPU-trained model misses.
BUNDLED_LIMITS = {"depth_absrel": 0.60, "rot_err_median_deg": 60.0, "novel_psnr_gain_db": 1.0}


def test_two_view_warm_up_and_a_layerscale_start(tmp_path):
    cfg = small_run(
        str(tmp_path / "run"),
        steps=3,
        views=(3, 4),
        heights=(28,),
        width=56,
        two_view_steps=2,
        layerscale_init=0.1,
        log_every=1,
        save_every=100,
    )
    trainer = Trainer(cfg, log=lambda line: None)
    gammas = [
        m.gamma
        for n, m in trainer.model.named_modules()
        if n.startswith(("aggregator.frame_blocks.", "aggregator.global_blocks.")) and hasattr(m, "gamma")
    ]
    assert gammas and all(torch.allclose(g, torch.full_like(g, 0.1)) for g in gammas)
    views = [trainer.train_step()["views"] for _ in range(3)]
    assert views[:2] == [2, 2] and views[2] in (3, 4)
    with pytest.raises(ValueError, match="from scratch"):
        build_model(TrainConfig(model="tiny", init=str(tmp_path / "x.safetensors"), layerscale_init=0.1))


def test_bench_generator_renders_batches_on_the_device(tmp_path):
    from zipmap_core.bench.micro import generator_rate

    r = generator_rate((28, 56), 4, 4, 1, "cpu", batch=2)
    assert r["scenes"] == 4 and r["batch"] == 2 and r["scenes_per_s"] > 0


def test_a_model_saved_in_shards_of_16_mib_opens_from_any_shard(tmp_path):
    from zipmap_core.io.checkpoints import CheckpointError

    torch.manual_seed(0)
    model = ZipMap(get_config("small"))
    limit = 4 * 2**20  # small enough to split this model as 16 MiB splits a 50 MB one
    first = save_model(model, tmp_path / "model.safetensors", description="sharded", max_shard_bytes=limit)
    files = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert first == files[0] and len(files) >= 3 and all(f.stat().st_size <= limit for f in files)
    images = torch.rand(1, 2, 3, 56, 56)
    with torch.no_grad():
        expected = model.eval()(images, window_size=0).depth
        for shard in (files[0], files[-1]):
            loaded = load_checkpoint(shard)
            assert loaded.description == "sharded"
            torch.testing.assert_close(loaded.model.eval()(images, window_size=0).depth, expected, rtol=0, atol=0)
    files[1].unlink()
    with pytest.raises(CheckpointError, match=f"{files[1].name} is missing"):
        load_checkpoint(files[0])


# ---- capture-like scenes (issue 18) ----------------------------------------------------------------------
def _centres(views):
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(*views.extrinsics.shape[:2], 1, 4)
    return torch.linalg.inv(torch.cat([views.extrinsics, bottom], 2))[..., :3, 3]


def test_capture_scenes_have_handheld_paths_small_objects_and_shadows():
    from zipmap_core.training.captures import generate_captures, handheld_cameras
    from zipmap_core.training.synthetic import render_views, sample_scenes

    walk = generate_captures(2, 6, 11, (42, 56), kind="walk")
    pan = generate_captures(2, 6, 11, (42, 56), kind="pan")
    step = lambda v: (_centres(v)[:, 1:] - _centres(v)[:, :-1]).norm(dim=-1)  # noqa: E731
    assert (step(walk) < 0.25).all() and (step(walk).sum(1) > 0.05).all()  # small steps forward
    assert (step(pan) < 0.12).all()  # the hand barely moves...
    rot = walk.extrinsics[:, 0, :3, :3] @ pan.extrinsics[:, -1, :3, :3].transpose(-1, -2)
    first_last = pan.extrinsics[:, 0, :3, :3] @ pan.extrinsics[:, -1, :3, :3].transpose(-1, -2)
    angle = torch.rad2deg(torch.arccos(((first_last.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert (angle > 20).all() and rot.shape == (2, 3, 3)  # ...while the view turns
    for views in (walk, pan):
        assert torch.isfinite(views.depth).all() and (views.depth > 0.2).all()
        assert views.images.min() >= 0 and views.images.max() <= 1
    params = sample_scenes(2, 11, slots=6, size=0.6, freq_hi=30.0)
    assert params.spheres.shape[1] == 6 and params.spheres[..., 3].max() <= 0.55 * 0.6 + 1e-6
    c2w, k = handheld_cameras(params, 3, 11, (42, 56), "orbit")
    lit = render_views(params, c2w, k, (42, 56), shadows=False)
    shadowed = render_views(params, c2w, k, (42, 56), shadows=True)
    assert (shadowed.images <= lit.images + 1e-6).all(), "a shadow only darkens"
    assert (shadowed.images < lit.images - 0.02).float().mean() > 0.01, "some floor lies in a shadow"
    torch.testing.assert_close(shadowed.depth, lit.depth)


def test_the_classic_family_is_unchanged_and_training_takes_either(tmp_path):
    views = generate(1, 3, 123, (28, 56))
    again = generate(1, 3, 123, (28, 56))
    torch.testing.assert_close(views.images, again.images, rtol=0, atol=0)
    cfg = small_run(str(tmp_path / "run"), steps=1, heights=(28,), width=56, scenes="captures", log_every=1, save_every=100)
    assert np.isfinite(Trainer(cfg, log=lambda line: None).train_step()["loss"])
    with pytest.raises(ValueError, match="scenes must be one of"):
        Trainer(TrainConfig(model="tiny", output=str(tmp_path / "x"), scenes="photos"), log=lambda line: None)


def test_capture_scenes_are_normalised_by_their_points_and_pans_skip_the_novel_views():
    """Normalised by the camera extent, a pan on the spot would be a hundred units deep; by the
    points' mean distance every path is about one unit. The novel-view term keeps the state-query
    convention and leaves out scenes whose cameras barely moved, scene by scene."""
    from zipmap_core.training.captures import generate_captures
    from zipmap_core.training.normalisation import mean_point_distance, query_unit
    from zipmap_core.training.trainer import MIN_QUERY_UNIT, novel_view_losses

    pan = generate_captures(2, 5, 31, (28, 56), kind="pan")
    orbit = generate_captures(2, 5, 31, (28, 56), kind="orbit")
    assert normalise(pan, 3)[0].depth.median() > 20  # the camera convention: far too deep
    for views in (pan, orbit):
        normed, _scale = normalise(views, 3, by="points")
        again = mean_point_distance(normed.depth[:, :3], normed.extrinsics[:, :3], normed.intrinsics[:, :3])
        torch.testing.assert_close(again, torch.ones(2), rtol=1e-4, atol=0)  # the points' mean distance is 1
        assert 0.2 < float(normed.depth.median()) < 2.0
        np.testing.assert_allclose(normed.extrinsics[:, 0].numpy(), np.tile(np.eye(4)[:3], (2, 1, 1)), atol=1e-4)
    with pytest.raises(ValueError, match="normalise by one of"):
        normalise(pan, 3, by="metres")

    torch.manual_seed(0)
    model = ZipMap(tiny_config()).eval()
    mixed = SceneViews(*(torch.cat((getattr(pan, k)[:1], getattr(orbit, k)[:1])) for k in ("images", "depth", "extrinsics", "intrinsics")))
    views, _ = normalise(mixed, 3, by="points")
    unit = query_unit(views, 3)
    assert unit[0] < MIN_QUERY_UNIT <= unit[1]
    only_orbit = SceneViews(views.images[1:], views.depth[1:], views.extrinsics[1:], views.intrinsics[1:])
    with torch.no_grad():
        both = novel_view_losses(model, views, 3, model(views.images[:, :3], window_size=0).states, {}, unit)
        alone = novel_view_losses(model, only_orbit, 3, model(only_orbit.images[:, :3], window_size=0).states, {}, unit[1:])
        none = novel_view_losses(model, views, 3, model(views.images[:, :3], window_size=0).states, {}, torch.zeros(2))
    assert none == {}
    for key in ("nvs_rgb", "nvs_depth"):
        torch.testing.assert_close(both[key], alone[key], rtol=1e-4, atol=1e-6)
