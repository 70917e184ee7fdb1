"""Access to the parity vectors made with the authors' code (`../shared/golden`)."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zipmap_core.model.config import ZipMapConfig
from zipmap_core.model.zipmap import ZipMap

GOLDEN_DIR = Path(os.environ.get("ZIPMAP_GOLDEN_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "golden"))


def require_golden(name: str) -> Path:
    path = GOLDEN_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"golden vectors not found at {GOLDEN_DIR} (set ZIPMAP_GOLDEN_DIR to the shared/golden folder)")
    return path


def load_case(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = json.loads(require_golden(name).read_text())
    return meta, load_file(str(GOLDEN_DIR / f"{name}.safetensors"))


def rel_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected.double()).pow(2).mean().sqrt()
    return float(err / (expected.double().pow(2).mean().sqrt() + 1e-30))


def golden_model(name: str) -> tuple[ZipMap, dict, dict[str, torch.Tensor]]:
    """The model of golden case `name`, built from its recorded configuration and weights."""
    meta, tensors = load_case(name)
    source = meta.get("uses_weights_of", name)
    source_meta, weights = (meta, tensors) if source == name else load_case(source)
    cfg = ZipMapConfig.from_reference(meta.get("config") or source_meta["config"], meta.get("model") or source_meta.get("model"))
    model = ZipMap(cfg)
    state = {k[len("weight.") :]: v for k, v in weights.items() if k.startswith("weight.")}
    model.load_state_dict(state, strict=True)
    return model.eval(), meta, tensors


def state_tolerances(meta: dict) -> dict[str, float]:
    """Per fast-weight tensor tolerances (2.5x the reference's own noise floor, measured with both
    AVX2 and AVX-512 kernels). Some golden files store the table as a Python dict literal."""
    table = meta.get("state_rel_rms_tolerance")
    if table is None:
        raise AssertionError("golden file has no state_rel_rms_tolerance table")
    return {k: float(v) for k, v in (ast.literal_eval(table) if isinstance(table, str) else table).items()}


def golden_kernels() -> bool:
    """Whether this process asks for the kernels the golden files were made with (AVX2 for ATen
    and oneDNN). Asking is not getting: some kernels (AMX, AVX512-BF16 paths) ignore the caps, so
    bit-identity there is reported, never asserted."""
    return os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2"


def kernel_fingerprint() -> dict[str, object]:
    """What decides which kernels run here: torch, ATen's capability, the caps asked for and the
    CPU's vector and matrix units."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
    return {
        "torch": torch.__version__,
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cpu_flags": [f for f in wanted if f in flags],
    }


# where the bit-identity diagnostic goes (conftest prints a summary of it at the end of a run)
BIT_IDENTITY_REPORT = Path(
    os.environ.get("ZIPMAP_BIT_IDENTITY_REPORT", Path(__file__).resolve().parents[1] / "out" / "golden-bit-identity.json")
)
bit_identity_records: list[dict[str, object]] = []


def record_bit_identity(case: str, errors: dict[str, float]) -> dict[str, object]:
    """Records whether the fast weights equal the reference's bit for bit on this machine, with
    the machine's kernel fingerprint: a fact about one machine, kept as a diagnostic."""
    differ = sorted(k for k, e in errors.items() if e != 0.0)
    record = {
        "case": case,
        "bit_identical": not differ,
        "tensors": len(errors),
        "differing": len(differ),
        "max_rel_rms": max(errors.values(), default=0.0),
        "kernels": kernel_fingerprint(),
    }
    bit_identity_records.append(record)
    try:
        BIT_IDENTITY_REPORT.parent.mkdir(parents=True, exist_ok=True)
        BIT_IDENTITY_REPORT.write_text(json.dumps(bit_identity_records, indent=2))
    except OSError:
        pass  # a read-only clone: the summary line still says it
    return record


def check_states(meta: dict, states: list[dict[str, torch.Tensor]], tensors: dict[str, torch.Tensor], case: str = "") -> dict[str, float]:
    """Every stored fast weight within its own tolerance, and every tolerance used. Whether they
    are also bit-identical is recorded (`record_bit_identity`) when the golden kernels were asked
    for; it is not asserted, since it holds only on machines whose kernels obey the caps."""
    tol = state_tolerances(meta)
    keys = [k for k in tensors if k.startswith("state.")]
    assert keys, "golden file has no stored state"
    assert set(keys) == set(tol), f"state tensors without a tolerance or missing: {set(keys) ^ set(tol)}"
    errors = {}
    for key in keys:
        _, layer, name = key.split(".")
        errors[key] = rel_rms(states[int(layer)][name], tensors[key])
    bad = {k: (round(e, 5), tol[k]) for k, e in errors.items() if e > tol[k]}
    assert not bad, f"fast weights outside tolerance (error, tolerance): {bad}"
    if case and golden_kernels():
        record_bit_identity(case, errors)
    return errors
