"""GPU proof: the pack's own sampler and probes around real CUDA allocations of known sizes.

Run it on a machine with an NVIDIA GPU (at most about 5 minutes; it stops itself at --budget-s). Without CUDA it
says so and exits 0 having measured nothing. It compares, for every phase:

- torch's allocator peak (`TorchMemoryProbe`: `max_memory_allocated` / `max_memory_reserved`),
- NVML's used memory sampled by the pack's `ResourceSampler` thread (needs `pynvml` / nvidia-ml-py),
- `torch.cuda.mem_get_info` (`DeviceMemoryProbe`: device used = total - free),

and which peak `choose_gpu_peak` keeps with and without DynamicVRAM. Energy: for every phase, the energy the
sampler attributes to the run (`energy_j`, `energy_source`), NVML's total energy counter read by this script
itself before and after the phase (millijoules, Volta and newer), and the same span integrated from the
sampler's power samples, so the counter and the power integral can be compared side by side; a matmul phase
draws load so that the counter visibly moves. Phases: tensors of known sizes through
torch's caching allocator, then (where libcudart can be loaded) a raw `cudaMalloc` of known size that torch's
counters cannot see, which is what model weights held by comfy-aimdo look like to them. With `--comfyui DIR` it
also starts that ComfyUI tree on the GPU with the pack and runs a model-free workflow, and records the run's
stored peak, its source and the DynamicVRAM flag.

The readings go to `tests/fixtures/gpu/<gpu>.json` (or `--out`) in the shape the sampler tests replay
(tests/test_gpu_sampler.py, through tests/fakes/nvml_replay.py): a `devices` list like
tests/fixtures/nvml_h100_replay.json, plus `phases`, each with its own NVML readings and the torch and
mem_get_info peaks. `provenance.measured_here` is true only in files this script wrote.

    python bench/gpu_proof.py                       # phases up to 8 GiB, bounded by free memory
    python bench/gpu_proof.py --comfyui ~/.cache/run-telemetry/comfyui-0.3.75 --out /tmp/h200.json
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

MIB = 1 << 20
GIB = 1 << 30
SIZES_BYTES = (256 * MIB, 1 * GIB, 4 * GIB, 8 * GIB)
HOLD_S = 0.5  # each allocation is held this long: many sampler intervals
INTERVAL_S = 0.02


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to write the readings (default tests/fixtures/gpu/<gpu>.json)")
    parser.add_argument("--comfyui", type=Path, help="a ComfyUI tree to start on the GPU for one workflow")
    parser.add_argument("--budget-s", type=float, default=270.0, help="stop starting new phases after this")
    args = parser.parse_args(argv)
    started = time.monotonic()

    try:
        import torch
    except Exception as exc:
        print(f"gpu_proof: torch is not importable ({exc}); nothing measured. Run it in the project's venv on a "
              "machine with an NVIDIA GPU.")
        return 0
    if not torch.cuda.is_available():
        print("gpu_proof: no CUDA device here (torch.cuda.is_available() is False); nothing measured. Run it on a "
              "machine with an NVIDIA GPU; the sampler tests replay tests/fixtures/gpu/*.json meanwhile.")
        return 0

    from telemetry.capture import gpu

    nvml = _pynvml()
    device = gpu.detect_device(torch_module=torch, nvml=nvml)
    print(f"device: {device.name} ({device.total_bytes / GIB:.1f} GiB), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, NVML index {device.nvml_index}")
    sampler = gpu.ResourceSampler(device, interval_s=INTERVAL_S, nvml=nvml)
    sampler.start()
    probe = gpu.TorchMemoryProbe(device, torch_module=torch)
    mem = gpu.DeviceMemoryProbe(device, torch_module=torch)
    torch.cuda.init()
    torch.empty(1, device="cuda")  # the context exists before the first baseline
    torch.cuda.synchronize()

    phases: list[dict[str, Any]] = []
    free, _ = torch.cuda.mem_get_info(device.torch_index)
    for size in SIZES_BYTES:
        if size > free * 0.6 or time.monotonic() - started > args.budget_s:
            break
        phases.append(_phase(f"torch tensor {size // MIB} MiB", size, sampler, probe, mem, torch, device,
                             lambda n=size: _torch_alloc(torch, n), nvml=nvml))
    if time.monotonic() - started < args.budget_s:
        phases.append(_phase("matmul load 2 s (energy)", 3 * 8192 * 8192 * 2, sampler, probe, mem, torch, device,
                             lambda: _matmul_load(torch, 2.0), nvml=nvml))
    cudart = _cudart()
    if cudart is not None and time.monotonic() - started < args.budget_s:
        size = min(4 * GIB, int(free * 0.4))
        phases.append(_phase(f"raw cudaMalloc {size // MIB} MiB (outside torch's allocator)", size, sampler, probe,
                             mem, torch, device, lambda n=size: _raw_alloc(cudart, n), nvml=nvml))
    sampler.close()

    comfy = None
    if args.comfyui and time.monotonic() - started < args.budget_s:
        comfy = _comfyui_run(args.comfyui, deadline_s=max(30.0, args.budget_s - (time.monotonic() - started)))

    _print_table(phases, comfy)
    record = _record(device, nvml, torch, phases, comfy)
    out = args.out or REPO / "tests" / "fixtures" / "gpu" / f"{_slug(device.name or 'gpu')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(phases)} phases) in {time.monotonic() - started:.0f} s")
    return 0


def _pynvml() -> Any | None:
    try:
        import pynvml

        return pynvml
    except Exception:
        print("pynvml (nvidia-ml-py) is not installed: no NVML readings; torch and mem_get_info only")
        return None


def _torch_alloc(torch: Any, size: int) -> Any:
    block = torch.empty(size, dtype=torch.uint8, device="cuda")
    block.fill_(1)  # touch every page
    torch.cuda.synchronize()

    def free() -> None:
        nonlocal block
        del block
        torch.cuda.empty_cache()
    return free


def _matmul_load(torch: Any, seconds: float) -> Any:
    """Half-precision matmuls for `seconds`: the GPU draws near its load power, and the energy counter rises."""
    a = torch.randn(8192, 8192, dtype=torch.float16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.float16, device="cuda")
    c = torch.empty(8192, 8192, dtype=torch.float16, device="cuda")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        torch.matmul(a, b, out=c)
        torch.cuda.synchronize()

    def free() -> None:
        nonlocal a, b, c
        del a, b, c
        torch.cuda.empty_cache()
    return free


def _energy_counter_mj(nvml: Any, index: int | None) -> int | None:
    """NVML's total energy counter read here, independently of the sampler thread (None: not supported)."""
    if nvml is None or index is None:
        return None
    try:
        nvml.nvmlInit()
        try:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(index)))
        finally:
            nvml.nvmlShutdown()
    except Exception:
        return None


def _cudart() -> Any | None:
    for name in ("libcudart.so", "libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    try:  # the runtime torch's wheels ship
        import nvidia.cuda_runtime  # type: ignore[import-not-found]

        lib = Path(nvidia.cuda_runtime.__path__[0]) / "lib"
        for path in sorted(lib.glob("libcudart.so*")):
            return ctypes.CDLL(str(path))
    except Exception:
        pass
    print("libcudart not found: no raw cudaMalloc phase")
    return None


def _raw_alloc(cudart: Any, size: int) -> Any:
    pointer = ctypes.c_void_p()
    code = cudart.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(size))
    if code != 0:
        raise RuntimeError(f"cudaMalloc({size}) returned {code}")
    cudart.cudaMemset(pointer, 1, ctypes.c_size_t(size))
    cudart.cudaDeviceSynchronize()
    return lambda: cudart.cudaFree(pointer)


def _phase(name: str, size: int, sampler: Any, probe: Any, mem: Any, torch: Any, device: Any,
           allocate: Any, nvml: Any = None) -> dict[str, Any]:
    from telemetry.capture.gpu.energy import power_energy_j
    from telemetry.collector import choose_gpu_peak

    torch.cuda.synchronize()
    time.sleep(0.2)
    baseline = mem.read_used()
    probe.reset_peak()
    mem.reset()
    counter_before = _energy_counter_mj(nvml, device.nvml_index)
    sampler.run_started()
    release = allocate()
    mem.read_used()
    time.sleep(HOLD_S)
    mem.read_used()
    release()
    torch.cuda.synchronize()
    time.sleep(0.1)
    mem.read_used()
    summary = sampler.run_finished()
    summary.wait_final()
    counter_after = _energy_counter_mj(nvml, device.nvml_index)
    energy_j, energy_source = summary.run_energy()
    track = next((d for d in summary.devices if d.comfyui_device), None)
    power_points = [(s.t_ms, s.power_w) for s in summary.samples if s.power_w is not None]
    allocated, reserved = probe.read_peak()
    readings = [{"t_ms": s.t_ms, "used_mib": s.used_bytes // MIB, "used_bytes": s.used_bytes,
                 "util_percent": s.util_percent, "temperature_c": s.temperature_c, "power_w": s.power_w}
                for s in summary.samples if s.used_bytes is not None]
    phase = {
        "name": name,
        "allocated_bytes": size,
        "baseline_used_bytes": baseline,
        "torch_allocated_peak_bytes": allocated,
        "torch_reserved_peak_bytes": reserved,
        "nvml_used_peak_bytes": summary.gpu_used_peak_bytes,
        "mem_get_info_used_peak_bytes": mem.peak_bytes,
        "nvml_readings": readings,
        "energy_j": energy_j,
        "energy_source": energy_source,
        "energy_counter_mj": [list(p) for p in track.counter] if track is not None else [],
        "script_counter_delta_j": (None if counter_before is None or counter_after is None
                                   else (counter_after - counter_before) / 1000.0),
        "power_integral_j": (power_energy_j(power_points, summary.start_ms, summary.end_ms)
                             if summary.start_ms is not None and summary.end_ms is not None else None),
        "gpus": [vars(g) for g in summary.gpus()],
    }
    phase["chosen"] = {
        "dynamic_vram_on": list(choose_gpu_peak(allocated, summary.gpu_used_peak_bytes, mem.peak_bytes, True)),
        "dynamic_vram_off": list(choose_gpu_peak(allocated, summary.gpu_used_peak_bytes, mem.peak_bytes, False)),
    }
    return phase


def _comfyui_run(root: Path, deadline_s: float) -> dict[str, Any] | None:
    """ComfyUI on the GPU (no --cpu) with the pack, one model-free workflow; the stored run's GPU fields."""
    from comfy_harness import ComfyServer, free_port, image_workflow

    if not (root / "main.py").is_file():
        print(f"no ComfyUI tree at {root}: no workflow run")
        return None
    base = Path(tempfile.mkdtemp(prefix="gpu-proof-"))
    server = ComfyServer(base, port=free_port())
    log = open(server.log_path, "ab")
    server.process = subprocess.Popen(
        [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(server.port), "--base-directory",
         str(base), "--disable-auto-launch"], cwd=root, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + min(deadline_s, 150.0)
        while time.monotonic() < end:
            try:
                server.get("/system_stats", timeout=2)
                break
            except Exception:
                if server.process.poll() is not None:
                    print(f"ComfyUI exited; log tail:\n{server.log_tail(2000)}")
                    return None
                time.sleep(0.5)
        else:
            print("ComfyUI did not answer in time: no workflow run")
            return None
        _, history, run = server.run_and_wait(image_workflow(width=2048, height=2048, batch=8, blur=15))
        health = server.get("/telemetry/health")
        return {"comfyui_dir": str(root), "status": run["status"], "gpu_name": run["gpu_name"],
                "gpu_peak_bytes": run["gpu_peak_bytes"], "gpu_peak_source": run["gpu_peak_source"],
                "gpu_used_peak_bytes": run["gpu_used_peak_bytes"], "dynamic_vram": run["dynamic_vram"],
                "node_gpu_peaks": {n["node_id"]: n["gpu_peak_bytes"] for n in run["nodes"]},
                "energy_j": run.get("energy_j"), "energy_source": run.get("energy_source"),
                "node_energy_j": {n["node_id"]: n.get("energy_j") for n in run["nodes"]},
                "gpus": run.get("gpus"),
                "hooks": health.get("hooks")}
    except Exception as exc:
        print(f"ComfyUI workflow failed: {exc!r}")
        return None
    finally:
        server.stop(kill=True)


def _print_table(phases: list[dict[str, Any]], comfy: dict[str, Any] | None) -> None:
    def gib(value: Any) -> str:
        return "-" if value is None else f"{value / GIB:7.3f}"

    print(f"\n{'phase':52} {'alloc':>7} {'torch':>7} {'reserv':>7} {'nvml':>7} {'meminfo':>7} "
          f"{'nvml/torch':>10}  chosen (DynamicVRAM on)")
    for p in phases:
        base = p["baseline_used_bytes"] or 0
        torch_peak = p["torch_allocated_peak_bytes"]
        nvml_delta = None if p["nvml_used_peak_bytes"] is None else p["nvml_used_peak_bytes"] - base
        ratio = f"{nvml_delta / torch_peak:10.2f}" if nvml_delta is not None and torch_peak else f"{'-':>10}"
        print(f"{p['name'][:52]:52} {gib(p['allocated_bytes'])} {gib(torch_peak)} {gib(p['torch_reserved_peak_bytes'])}"
              f" {gib(p['nvml_used_peak_bytes'])} {gib(p['mem_get_info_used_peak_bytes'])} {ratio}  "
              f"{p['chosen']['dynamic_vram_on'][1]}")
    print("(GiB; nvml and meminfo are whole-device used memory, nvml/torch compares the rise above the baseline)")

    def joules(value: Any) -> str:
        return f"{'-':>9}" if value is None else f"{value:9.1f}"

    print(f"\n{'phase':52} {'energy J':>9} {'source':>14} {'script J':>9} {'power J':>9} {'power/counter':>13}")
    for p in phases:
        counter, power = p.get("energy_j"), p.get("power_integral_j")
        ratio = f"{power / counter:13.3f}" if counter and power is not None and p.get("energy_source") == \
            "nvml_counter" else f"{'-':>13}"
        print(f"{p['name'][:52]:52} {joules(counter)} {p.get('energy_source') or '-':>14} "
              f"{joules(p.get('script_counter_delta_j'))} {joules(power)} {ratio}")
    print("(energy J: what the run records; script J: the counter read by this script around the phase, a little "
          "wider; power J: the trapezoid over the sampler's power samples)")
    if comfy is not None:
        print(f"\nComfyUI run: {comfy['status']}, peak {gib(comfy['gpu_peak_bytes'])} GiB from "
              f"{comfy['gpu_peak_source']}, NVML used peak {gib(comfy['gpu_used_peak_bytes'])}, dynamic_vram "
              f"{comfy['dynamic_vram']}, energy {comfy.get('energy_j')} J ({comfy.get('energy_source')})")


def _record(device: Any, nvml: Any, torch: Any, phases: list[dict[str, Any]],
            comfy: dict[str, Any] | None) -> dict[str, Any]:
    identity: dict[str, Any] = {"name": device.name, "uuid": None, "pci_bus_id": None,
                                "memory_total_mib": (device.total_bytes or 0) // MIB, "unsupported": []}
    driver = None
    if nvml is not None and device.nvml_index is not None:
        try:
            nvml.nvmlInit()
            handle = nvml.nvmlDeviceGetHandleByIndex(device.nvml_index)
            identity["uuid"] = text(nvml.nvmlDeviceGetUUID(handle))
            identity["pci_bus_id"] = text(nvml.nvmlDeviceGetPciInfo(handle).busId)
            identity["memory_total_mib"] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // MIB
            driver = text(nvml.nvmlSystemGetDriverVersion())
            nvml.nvmlShutdown()
        except Exception as exc:
            print(f"NVML identity failed: {exc!r}")
    identity["readings"] = [r for p in phases for r in p["nvml_readings"]] or [
        {"used_mib": None, "util_percent": None, "temperature_c": None, "power_w": None}]
    return {
        "description": f"Readings of one {device.name}, taken by bench/gpu_proof.py with the pack's own sampler "
                       "and probes around CUDA allocations of known sizes; replayed by tests/test_gpu_sampler.py.",
        "provenance": {
            "measured_here": True,
            "how": "bench/gpu_proof.py on a machine with this GPU",
            "when_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": platform.node(), "driver": driver, "torch": torch.__version__, "cuda": torch.version.cuda,
            "sample_interval_s": INTERVAL_S, "hold_s": HOLD_S,
        },
        "torch_index": device.torch_index,
        "devices": [identity],
        "phases": phases,
        "comfyui": comfy,
    }


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


if __name__ == "__main__":
    raise SystemExit(main())
