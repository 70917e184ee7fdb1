"""Hostile and odd inputs through the command line, each in a child process, checked the way a
careful user would: no traceback, an exit code of 0 (done) or 2 (a clear one-line refusal), no hang,
no file of the user's changed, no output holding a non-finite number, and no input under 1 MB
taking more than 1 GB of memory.

    xvfb-run -a python benchmarks/hostile_cases.py [--json docs/hostile_cases.json] [--only SUBSTRING]

Every case builds its own files in a temporary folder; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TIMEOUT_S = 300
MEMORY_LIMIT_MB = 1024
# a non-finite number as JSON and COLMAP's text files write one (NaN, nan, inf, Infinity)
NON_FINITE_WORD = re.compile(r"(?<![\w.])[-+]?(nan|inf|infinity)(?![\w.])", re.IGNORECASE)


@dataclasses.dataclass
class Case:
    name: str
    argv: list[str]  # after `zipmap` (or `zipmap-studio` when `studio`)
    user_files: list[Path] = dataclasses.field(default_factory=list)  # must be unchanged afterwards
    outputs: list[Path] = dataclasses.field(default_factory=list)  # checked for non-finite numbers on success
    studio: bool = False
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # more of the environment it runs in


# ---- fixtures ---------------------------------------------------------------------------------------
def _photos(folder: Path, recon) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(recon.images):
        Image.fromarray(image).save(folder / f"p{i}.png")
    return folder


def _ckpt(path: Path, config=None, nan: bool = False, meta: dict | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    from zipmap_core.io.checkpoints import FORMAT_NAME, save_model
    from zipmap_core.model.config import tiny_config
    from zipmap_core.model.zipmap import ZipMap

    torch.manual_seed(0)
    model = ZipMap(tiny_config()).eval()
    if nan:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
    if config is None and meta is None:
        return save_model(model, path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    cfg = tiny_config().to_json() if config is None else json.dumps(config)
    save_file(state, str(path), metadata={"format": FORMAT_NAME, "format_version": "1", "config": cfg, **(meta or {})})
    return path


def _scene(path: Path, recon, **changes) -> Path:
    return dataclasses.replace(recon, **changes).save(path)


def build_cases(tmp: Path) -> list[Case]:
    from PIL import Image
    from scenes import truth_reconstruction

    from zipmap_core.model.config import tiny_config

    recon = truth_reconstruction(views=3, hw=(28, 42))
    photos = _photos(tmp / "photos", recon)
    ckpt = _ckpt(tmp / "tiny.safetensors")
    scene = recon.save(tmp / "scene.zipmap")
    rec = ["--checkpoint", str(ckpt), "--device", "cpu", "-q"]
    cases: list[Case] = []

    def add(name: str, argv: list[str], **kw) -> None:
        cases.append(Case(name, [str(a) for a in argv], **kw))

    def out(name: str) -> Path:
        return tmp / "out" / name

    # pictures and folders
    odd = tmp / "odd_pictures"
    odd.mkdir()
    for i in range(3):
        Image.new("1", (13_400, 13_400)).save(odd / f"bomb{i}.png")
    Image.new("RGB", (1, 30_000)).save(odd / "strip.png")
    (odd / "empty.jpg").write_bytes(b"")
    (odd / "text.png").write_text("not a picture")
    (odd / "truncated.jpg").write_bytes((photos / "p0.png").read_bytes()[:60])
    Image.fromarray((np.arange(42 * 28).reshape(28, 42) * 50).astype(np.uint16)).save(odd / "sixteen.png")
    Image.new("CMYK", (42, 28), (10, 200, 30, 0)).save(odd / "cmyk.jpg")
    Image.new("P", (42, 28)).save(odd / "palette.png", transparency=0)
    (odd / "..jpg").write_bytes((photos / "p1.png").read_bytes())
    (odd / "dir.jpg").mkdir()
    os.mkfifo(odd / "fifo.png")
    for name in ("p0.png", "p2.png"):
        (odd / name).write_bytes((photos / name).read_bytes())
    add(
        "pictures: bombs, strips, empty, odd modes, '..jpg', a FIFO",
        ["reconstruct", odd, "-o", out("odd"), *rec, "--export", "ply,colmap,nerfstudio"],
        outputs=[out("odd")],
    )
    add("pictures only bombs", ["reconstruct", *[odd / f"bomb{i}.png" for i in range(3)], "-o", out("bombs"), *rec])
    empty = tmp / "empty_folder"
    empty.mkdir()
    add("an empty folder", ["reconstruct", empty, "-o", out("empty"), *rec])
    add("a missing path", ["reconstruct", tmp / "nowhere", "-o", out("missing"), *rec])
    # videos
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "text.mp4").write_text("not a video")
    add("an empty video and a text video", ["reconstruct", tmp / "empty.mp4", tmp / "text.mp4", "-o", out("vid"), *rec])
    # checkpoints
    (tmp / "empty.safetensors").write_bytes(b"")
    (tmp / "text.pt").write_text("not a checkpoint")
    (tmp / "ckpt_dir").mkdir()
    os.mkfifo(tmp / "ckpt_fifo")
    big = tiny_config().to_dict()
    big["aggregator"]["depth"] = 100_000
    wide = tiny_config().to_dict()
    wide["img_size"] = 14_000
    bad_ckpts = {
        "empty": tmp / "empty.safetensors",
        "text": tmp / "text.pt",
        "folder": tmp / "ckpt_dir",
        "fifo": tmp / "ckpt_fifo",
        "config null": _ckpt(tmp / "null.safetensors", config=None, meta={"config": "null"}),
        "config list": _ckpt(tmp / "list.safetensors", config=[1, 2]),
        "depth 100000": _ckpt(tmp / "deep.safetensors", config=big),
        "img_size 14000": _ckpt(tmp / "wide.safetensors", config=wide),
        "NaN weights": _ckpt(tmp / "nan.safetensors", nan=True),
        "format_version x": _ckpt(tmp / "fv.safetensors", meta={"format_version": "x"}),
    }
    truncated = tmp / "truncated.safetensors"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    bad_ckpts["truncated"] = truncated
    for what, path in bad_ckpts.items():
        add(f"checkpoint {what}: info", ["info", path])
        add(
            f"checkpoint {what}: reconstruct",
            ["reconstruct", photos, "-o", out(f"ck_{len(cases)}"), "--checkpoint", path, "--device", "cpu", "-q"],
        )
    # scene files
    one_layer = [{"w0": np.ones((1, 32, 64), np.float32), "w1": np.ones((1, 64, 32), np.float32), "w2": np.ones((1, 32, 64), np.float32)}]
    nan_ext = recon.extrinsics.copy()
    nan_ext[1, 0, 0] = np.nan
    nan_k = recon.intrinsics.copy()
    nan_k[2, 1, 1] = np.inf
    zero_k = recon.intrinsics.copy()
    zero_k[0, 0, 0] = 0
    nan_depth = recon.depth.copy()
    nan_depth[0, 3, 3] = np.nan
    nan_state = [{k: v.copy() for k, v in layer.items()} for layer in one_layer]
    nan_state[0]["w1"][0, 0, 0] = np.nan
    scenes = {
        "NaN extrinsics": _scene(tmp / "s_ext.zipmap", recon, extrinsics=nan_ext),
        "infinite intrinsics": _scene(tmp / "s_k.zipmap", recon, intrinsics=nan_k),
        "zero focal length": _scene(tmp / "s_zero.zipmap", recon, intrinsics=zero_k),
        "NaN depth": _scene(tmp / "s_depth.zipmap", recon, depth=nan_depth),
        "NaN state": _scene(tmp / "s_state.zipmap", recon, state=nan_state),
        "NaN confidence": _scene(tmp / "s_conf.zipmap", recon, depth_conf=np.full_like(recon.depth_conf, np.nan)),
        "odd timings": _scene(tmp / "s_time.zipmap", recon, timings={"total_s": "fast"}),
    }
    (tmp / "text.zipmap").write_text("not a scene")
    (tmp / "scene_dir.zipmap").mkdir()
    os.mkfifo(tmp / "scene_fifo.zipmap")
    with zipfile.ZipFile(tmp / "deep.zipmap", "w") as zf:
        zf.writestr("manifest.json", "[" * 100_000 + "]" * 100_000)
    with zipfile.ZipFile(tmp / "bomb.zipmap", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "manifest.json", json.dumps({"format": "zipmap-scene", "version": 1, "names": ["a"], "image_hw": [28, 42], "num_frames": 1})
        )
        zf.writestr("arrays.npz", b"\0" * (256 << 20))
    scenes.update(
        {
            "text": tmp / "text.zipmap",
            "folder": tmp / "scene_dir.zipmap",
            "FIFO": tmp / "scene_fifo.zipmap",
            "deep manifest": tmp / "deep.zipmap",
            "zip bomb": tmp / "bomb.zipmap",
        }
    )
    for what, path in scenes.items():
        for fmt, target in (("ply", "p.ply"), ("glb", "s.glb"), ("colmap", "colmap")):
            dest = out(f"sc_{len(cases)}_{target}")
            add(f"scene {what}: export {fmt}", ["export", path, "--format", fmt, "-o", dest, "-q"], outputs=[dest])
        add(f"scene {what}: render", ["render", path, "--orbit", "3", "-o", out(f"r_{len(cases)}"), *rec], outputs=[out(f"r_{len(cases)}")])
    add(
        "render a one-layer state", ["render", _scene(tmp / "s_one.zipmap", recon, state=one_layer), "--orbit", "3", "-o", out("one"), *rec]
    )
    # camera files
    for what, content in {
        "no c2w": {"intrinsics": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
        "NaN": {"c2w": [[[float("nan")] * 4] * 3]},
        "wrong shape": {"c2w": [[1, 2], [3, 4]]},
        "text": "east",
    }.items():
        cams = tmp / f"cams_{len(cases)}.json"
        cams.write_text(json.dumps(content))
        add(f"camera file {what}", ["render", scene, "--c2w", cams, "-o", out(f"c_{len(cases)}"), *rec])
    deep_cams = tmp / "deep_cams.json"
    deep_cams.write_text("[" * 100_000 + "]" * 100_000)
    add("camera file nested too deeply", ["render", scene, "--c2w", deep_cams, "-o", out("deep_cams"), *rec])
    # the user's own files in the way
    project = tmp / "myproject"
    (project / "images").mkdir(parents=True)
    (project / "images" / "IMG_0001.JPG").write_bytes(b"the user's photo")
    (project / "images" / "view_000.png").write_bytes(b"the user's other photo")
    for fmt in ("colmap", "nerfstudio"):
        add(
            f"export {fmt} into a user's folder",
            ["export", scene, "--format", fmt, "-o", project, "-q"],
            user_files=[project / "images" / "IMG_0001.JPG", project / "images" / "view_000.png"],
        )
    render_dir = tmp / "render_dir"
    (render_dir / "frames").mkdir(parents=True)
    (render_dir / "frames" / "notes.txt").write_text("the user's notes")
    add(
        "render into a folder with the user's notes",
        ["render", scene, "--orbit", "3", "-o", render_dir, *rec],
        user_files=[render_dir / "frames" / "notes.txt"],
    )
    d = tmp / "D"
    (d / "colmap").mkdir(parents=True)
    (d / "colmap" / "notes.txt").write_text("the user's notes")
    add(
        "reconstruct --export colmap over the user's colmap folder",
        ["reconstruct", photos, "-o", d, *rec, "--export", "colmap"],
        user_files=[d / "colmap" / "notes.txt"],
    )
    occupied = tmp / "occupied"
    occupied.mkdir()
    (occupied / "scene.zipmap").write_text("the user's file of that name")
    add("reconstruct over the user's scene.zipmap", ["reconstruct", photos, "-o", occupied, *rec], user_files=[occupied / "scene.zipmap"])
    # nonsense options
    for opts in (
        ["--nproc", "-1"],
        ["--nproc", "0"],
        ["--fps", "-1"],
        ["--fps", "0"],
        ["--fps", "1e9"],
        ["--video-frames", "0"],
        ["--max-frames", "0"],
        ["--resolution", "0"],
        ["--resolution", "14000"],
        ["--window-size", "-1"],
        ["--variant", "bogus"],
    ):
        add(f"reconstruct {' '.join(opts)}", ["reconstruct", photos, "-o", out(f"o_{len(cases)}"), *rec, *opts])
    for opts in (
        ["--orbit", "3", "--fov", "0"],
        ["--orbit", "3", "--fov", "180"],
        ["--orbit", "3", "--fps", "0"],
        ["--orbit", "100000"],
        ["--orbit", "3", "--size", "14000x14000"],
    ):
        add(f"render {' '.join(opts)}", ["render", scene, "-o", out(f"o_{len(cases)}"), *rec, *opts])
    add("generate --views 0", ["generate", out("gen"), "--views", "0"])
    add("generate --scenes -1", ["generate", out("gen"), "--scenes", "-1"])
    add("studio --scale 0", ["--scale", "0", "--exit"], studio=True)
    add("studio --size 0x0", ["--size", "0x0", "--exit"], studio=True)
    cases += more_cases(tmp, recon, photos, scene, ckpt, rec, out)
    # and the ordinary run, which must still work
    add(
        "an ordinary run",
        ["reconstruct", photos, "-o", out("ordinary"), *rec, "--export", "ply,glb,colmap,nerfstudio"],
        outputs=[out("ordinary")],
    )
    return cases


def more_cases(tmp: Path, recon, photos: Path, scene: Path, ckpt: Path, rec: list[str], out) -> list[Case]:
    """The third pass's cases: what the last run still got wrong, the new inputs (known cameras,
    masks), the default engine on pictures COLMAP cannot register, and the studio's exits."""
    from PIL import Image

    cases: list[Case] = []

    def add(name: str, argv: list, **kw) -> None:
        cases.append(Case(name, [str(a) for a in argv], **kw))

    behind = _scene(tmp / "behind.zipmap", recon, depth=-np.abs(recon.depth), points_cam=None, points_world=None, points_from_depth=True)
    for fmt, target in (("glb", "b.glb"), ("ply", "b.ply"), ("nerfstudio", "b_ns"), ("mesh", "b_mesh.ply")):
        add(
            f"scene with no point in front: export {fmt}",
            ["export", behind, "--format", fmt, "-o", out(target), "-q"],
            outputs=[out(target)],
        )
    add("mesh with a 1e-30 voxel", ["export", scene, "--format", "mesh", "--voxel-size", "1e-30", "-o", out("tiny_voxel.ply")])
    k = recon.intrinsics[0].copy()
    k[0, 0] = 0
    for what, content in {
        "zero focal length": {"c2w": recon.cam_to_world[:1].tolist(), "intrinsics": k.tolist()},
        "a scaled rotation": {"c2w": (recon.cam_to_world[:1] * 2).tolist()},
        "numbers beyond float32": {"c2w": [[[1e300] * 4] * 3]},
        "a huge whole number": json.loads('{"c2w": [[[1' + "0" * 400 + ", 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]]}"),
    }.items():
        cams = tmp / f"cams3_{len(cases)}.json"
        cams.write_text(json.dumps(content))
        add(f"camera file with {what}", ["render", scene, "--c2w", cams, "-o", out(f"c3_{len(cases)}"), "--source", "points", "-q"])
    odd = tmp / "odd_paths"
    odd.mkdir()
    os.mkfifo(odd / "pipe.png")
    os.symlink(odd / "b.png", odd / "a.png")
    os.symlink(odd / "a.png", odd / "b.png")
    os.symlink(odd / "nowhere.png", odd / "dangling.png")
    for name in ("pipe.png", "a.png", "dangling.png"):
        add(f"a picture that is {name}", ["reconstruct", odd / name, "-o", out(f"odd_{name}"), *rec])
    (tmp / "a_file").write_text("the user's file")
    add("an output below a file", ["reconstruct", photos, "-o", tmp / "a_file" / "sub", *rec], user_files=[tmp / "a_file"])
    long = _scene(tmp / "long.zipmap", recon, names=["é" * 200 + f"{i}.png" for i in range(recon.num_frames)])
    for fmt in ("colmap", "nerfstudio"):
        add(
            f"frame names too long: export {fmt}",
            ["export", long, "--format", fmt, "-o", out(f"long_{fmt}"), "-q"],
            outputs=[out(f"long_{fmt}")],
        )
    cases += known_camera_cases(tmp, recon, photos, out)
    cases += mask_cases(tmp, recon, photos, out)
    noise = tmp / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(noise / f"n{i}.png")
    add("the default engine on pictures COLMAP cannot register", ["reconstruct", noise, "-o", out("auto_noise"), "--device", "cpu", "-q"])
    cases += studio_cases(tmp, photos, scene, ckpt, out)
    return cases


def known_camera_cases(tmp: Path, recon, photos: Path, out) -> list[Case]:
    """--poses files missing pictures, of other sizes, non-finite or not rigid, and hostile COLMAP files."""
    from zipmap_core.io.exporters import export

    export(recon, "nerfstudio", tmp / "ns_known")
    good = json.loads((tmp / "ns_known" / "transforms.json").read_text())
    for f in good["frames"]:
        f["file_path"] = f["file_path"].replace("view_", "p").replace("p00", "p")
    cases: list[Case] = []
    variants = {
        "missing a picture": lambda d: d["frames"].pop(),
        "other sizes": lambda d: [f.update(w=640, h=480) for f in d["frames"]],
        "NaN": lambda d: d["frames"][0]["transform_matrix"][0].__setitem__(0, float("nan")),
        "not rigid": lambda d: d["frames"][0]["transform_matrix"][0].__setitem__(0, 3.0),
        "no frames": lambda d: d.update(frames=[]),
    }
    for what, change in variants.items():
        data = json.loads(json.dumps(good))
        change(data)
        path = tmp / f"poses_{len(cases)}.json"
        path.write_text(json.dumps(data))
        argv = ["reconstruct", photos, "-o", tmp / "out" / f"poses_{len(cases)}", "--engine", "colmap", "--poses", path, "-q"]
        cases.append(Case(f"--poses {what}", [str(a) for a in argv]))
    hostile = tmp / "hostile_colmap"
    hostile.mkdir()
    (hostile / "cameras.bin").write_bytes((2**62).to_bytes(8, "little"))
    (hostile / "images.bin").write_bytes(bytes(8))
    argv = ["reconstruct", photos, "-o", tmp / "out" / "poses_hostile", "--engine", "colmap", "--poses", hostile, "-q"]
    cases.append(Case("--poses a COLMAP model declaring 2^62 cameras", [str(a) for a in argv]))
    return cases


def mask_cases(tmp: Path, recon, photos: Path, out) -> list[Case]:
    """--masks missing, of another size, not pictures, and a decompression bomb."""
    from PIL import Image

    cases: list[Case] = []
    names = sorted(p.name for p in photos.iterdir())
    for what in ("missing", "size", "text", "bomb"):
        folder = tmp / f"masks_{what}"
        folder.mkdir()
        for i, name in enumerate(names):
            if what == "missing" and i == 0:
                continue
            image = Image.new("L", (100, 100) if what == "size" else (42, 28), 255)
            image.save(folder / f"{name}.png")
        if what == "text":
            (folder / f"{names[1]}.png").write_text("not a picture")
        if what == "bomb":
            Image.new("1", (13_400, 13_400)).save(folder / f"{names[2]}.png")
        argv = ["reconstruct", photos, "-o", tmp / "out" / f"masks_{what}", "--engine", "colmap", "--masks", folder, "-q"]
        cases.append(Case(f"--masks {what}", [str(a) for a in argv]))
    return cases


def studio_cases(tmp: Path, photos: Path, scene: Path, ckpt: Path, out) -> list[Case]:
    """The studio run headless to a screenshot and out, as scripts and CI run it: every exit clean."""
    cases: list[Case] = []
    empty_cache = tmp / "empty_hf"
    empty_cache.mkdir()
    for what, argv, env in (
        ("photos", [photos, "--checkpoint", ckpt], {}),
        ("photos, the default engine", [photos], {}),
        ("a scene file", [scene], {}),
        ("a missing input", [tmp / "nowhere.png", "--checkpoint", ckpt], {}),
        ("the official weights offline, empty cache", [photos, "--checkpoint", "official"], {"HF_HOME": str(empty_cache)}),
        ("a broken checkpoint", [photos, "--checkpoint", tmp / "text.pt"], {}),
    ):
        shot = out(f"studio_{len(cases)}.png")
        cases.append(Case(f"studio: {what}", [str(a) for a in [*argv, "--screenshot", shot, "--exit"]], studio=True, env=env))
    return cases


# ---- running and checking -------------------------------------------------------------------------
def _snapshot(paths: list[Path]) -> dict[str, bytes | None]:
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in paths}


def non_finite_in(folder: Path) -> list[str]:
    """Output files holding NaN or infinity (PLY/GLB through trimesh, COLMAP text, JSON, .npy)."""
    import trimesh

    found = []
    paths = [folder] if folder.is_file() else [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    for p in paths:
        try:
            if p.suffix in (".ply", ".glb"):
                geom = trimesh.load(p, process=False)
                parts = geom.geometry.values() if isinstance(geom, trimesh.Scene) else [geom]
                if not all(np.isfinite(np.asarray(g.vertices)).all() for g in parts):
                    found.append(str(p))
            elif p.suffix == ".npy":
                if not np.isfinite(np.load(p, allow_pickle=False)).all():
                    found.append(str(p))
            elif p.suffix in (".json", ".txt"):
                if NON_FINITE_WORD.search(p.read_text(errors="replace")):
                    found.append(str(p))
        except (ValueError, OSError) as exc:
            found.append(f"{p} (unreadable: {exc})")
    return found


def run_case(case: Case, scratch: Path) -> dict:
    """One case in a child process; its own peak resident memory from GNU time (`/usr/bin/time`,
    which reads the child's rusage at exit), where that is installed."""
    before = _snapshot(case.user_files)
    cmd = [sys.executable, "-m", "app" if case.studio else "zipmap_core.cli", *case.argv]
    report = scratch / "peak_kb"
    report.unlink(missing_ok=True)
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(report), *cmd]
    platform = "xcb" if os.environ.get("DISPLAY") else "offscreen"  # under xvfb-run the studio really renders
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": platform, **case.env}
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        code, stderr, hang = done.returncode, done.stderr, False
    except subprocess.TimeoutExpired as exc:
        code, stderr, hang = None, str(exc.stderr or ""), True
    seconds = time.perf_counter() - t0
    peak_mb = int(report.read_text().split()[-1]) / 1024 if report.exists() and report.read_text().strip() else None
    problems = []
    if hang:
        problems.append("hang")
    if "Traceback" in stderr or "RuntimeError" in stderr or "internal error" in stderr:
        problems.append("traceback")
    if code not in (0, 2):
        problems.append(f"exit {code}")
    if _snapshot(case.user_files) != before:
        problems.append("a user's file changed")
    if code == 0:
        bad = [f for o in case.outputs for f in non_finite_in(o)]
        if bad:
            problems.append(f"non-finite output: {bad[:3]}")
    if peak_mb is not None and peak_mb > MEMORY_LIMIT_MB:
        problems.append(f"peak memory {peak_mb:.0f} MB")
    lines = [line for line in stderr.strip().splitlines() if "Command exited with non-zero status" not in line]
    return {
        "case": case.name,
        "exit": code,
        "seconds": round(seconds, 2),
        "peak_mb": peak_mb,
        "problems": problems,
        "said": (lines or [""])[-1][:300],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", help="run the cases whose name holds this text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hostile.") as tmp:
        cases = [c for c in build_cases(Path(tmp)) if not args.only or args.only in c.name]
        results = []
        for case in cases:
            r = run_case(case, Path(tmp))
            results.append(r)
            flag = "ok " if not r["problems"] else "BAD"
            peak = f"{r['peak_mb']:6.0f} MB" if r["peak_mb"] is not None else "     ? MB"
            print(f"{flag} {r['exit']!s:>4} {r['seconds']:6.1f}s {peak}  {r['case']}: {r['said'][:110]}", flush=True)
    summary = {
        "cases": len(results),
        "with_problems": sum(bool(r["problems"]) for r in results),
        "tracebacks": sum("traceback" in r["problems"] for r in results),
        "hangs": sum("hang" in r["problems"] for r in results),
        "user_files_changed": sum("a user's file changed" in r["problems"] for r in results),
        "non_finite_outputs": sum(any(p.startswith("non-finite") for p in r["problems"]) for r in results),
        "over_memory": sum(any(p.startswith("peak") for p in r["problems"]) for r in results),
        "peak_mb_max": max((r["peak_mb"] or 0.0 for r in results), default=0.0),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    return 0 if summary["with_problems"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
