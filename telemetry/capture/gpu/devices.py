"""Which device ComfyUI computes on, and the same physical GPU in NVML.

`detect_device()` names the device (`comfy.model_management.get_torch_device()` when loaded, else torch's
default) and finds it in NVML by UUID or PCI bus id, because `CUDA_VISIBLE_DEVICES` renumbers torch's devices but
not NVML's. `match_nvml_index` is the pure rule, with its priority order in its docstring. Called at load time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._util import _attempt, _import_pynvml, _import_torch, _quietly, _text, logger

BACKENDS = frozenset({"cuda", "rocm", "mps", "xpu", "cpu"})


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "cuda" | "rocm" | "mps" | "xpu" | "cpu"
    torch_index: int | None
    nvml_index: int | None  # NVML index of the same physical GPU; None when NVML is unusable or no match
    name: str | None
    total_bytes: int | None
    # NVML indexes of every GPU this process can use, in torch's order (CUDA_VISIBLE_DEVICES applied): the
    # devices sampled. None: only `nvml_index` (or nothing) is known.
    visible_nvml_indexes: tuple[int, ...] | None = None


CPU_DEVICE = DeviceInfo(backend="cpu", torch_index=None, nvml_index=None, name=None, total_bytes=None)


@dataclass(frozen=True)
class NvmlGpuIdentity:
    """What NVML says about one GPU, enough to find it again from torch's side."""

    index: int
    uuid: str | None
    pci_bus_id: str | None


def detect_device(
    *, torch_module: Any | None = None, nvml: Any | None = None, environ: Mapping[str, str] | None = None
) -> DeviceInfo:
    """The device ComfyUI computes on (`comfy.model_management.get_torch_device()` when loaded, else torch's
    default). ROCm is a CUDA device with `torch.version.hip` set. Returns `CPU_DEVICE` on any problem.

    The keyword arguments replace torch, pynvml and `os.environ` (tests); when `torch_module` is given, ComfyUI
    is not consulted."""
    try:
        torch = torch_module if torch_module is not None else _import_torch()
        if torch is None:
            return CPU_DEVICE
        device = _comfy_torch_device() if torch_module is None else None
        return _describe_device(torch, device, nvml, os.environ if environ is None else environ)
    except Exception:
        logger.warning("GPU detection failed; recording RAM only", exc_info=True)
        return CPU_DEVICE


def _comfy_torch_device() -> Any | None:
    module = sys.modules.get("comfy.model_management")
    try:
        if module is None:
            import comfy.model_management as module
        return module.get_torch_device()
    except (Exception, SystemExit):
        logger.debug("comfy.model_management unavailable; using torch's default device", exc_info=True)
        return None


def _describe_device(torch: Any, device: Any | None, nvml: Any | None, environ: Mapping[str, str]) -> DeviceInfo:
    kind = getattr(device, "type", None) if device is not None else _default_device_type(torch)
    index = getattr(device, "index", None)
    if kind == "cuda":
        index = torch.cuda.current_device() if index is None else index
        props = torch.cuda.get_device_properties(index)
        is_rocm = bool(getattr(getattr(torch, "version", None), "hip", None))
        nvml_index, visible = (None, None) if is_rocm else _nvml_indexes_for(torch, index, nvml, environ)
        return DeviceInfo("rocm" if is_rocm else "cuda", index, nvml_index, props.name, int(props.total_memory),
                          visible)
    if kind == "xpu":
        index = torch.xpu.current_device() if index is None else index
        props = torch.xpu.get_device_properties(index)
        return DeviceInfo("xpu", index, None, props.name, int(props.total_memory))
    if kind == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        total = int(recommended()) if recommended is not None else None
        return DeviceInfo("mps", 0, None, "Apple MPS", total)
    return CPU_DEVICE


def _default_device_type(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _nvml_indexes_for(torch: Any, index: int, nvml: Any | None,
                      environ: Mapping[str, str]) -> tuple[int | None, tuple[int, ...] | None]:
    """NVML's index of torch's device `index`, and those of every device torch sees (in torch's order; a device
    that cannot be matched is left out)."""
    nvml = nvml if nvml is not None else _import_pynvml()
    if nvml is None:
        return None, None
    try:
        nvml.nvmlInit()
    except Exception as exc:
        logger.info("NVML unavailable (%r); GPU sampling disabled", exc)
        return None, None
    try:
        gpus = list_nvml_gpus(nvml)
        count = _attempt(torch.cuda.device_count)

        def match(torch_index: int) -> int | None:
            props = torch.cuda.get_device_properties(torch_index)
            uuid = getattr(props, "uuid", None)
            pci = _attempt(lambda: _pci_text(getattr(props, "pci_domain_id", 0), props.pci_bus_id,
                                             props.pci_device_id))
            return match_nvml_index(
                gpus,
                torch_index=torch_index,
                uuid=None if uuid is None else str(uuid),
                pci_bus_id=pci,
                visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
                device_order=environ.get("CUDA_DEVICE_ORDER"),
                torch_device_count=count,
            )

        own = match(index)
        visible: list[int] = []
        for torch_index in range(count if isinstance(count, int) else 0):
            found = own if torch_index == index else _attempt(lambda i=torch_index: match(i))
            if found is not None and found not in visible:
                visible.append(found)
        if own is not None and own not in visible:
            visible.insert(0, own)
        return own, tuple(visible) if own is not None else None
    except Exception:
        logger.warning("could not match the torch device to an NVML device", exc_info=True)
        return None, None
    finally:
        _quietly(nvml.nvmlShutdown)


def list_nvml_gpus(nvml: Any) -> list[NvmlGpuIdentity]:
    """UUID and PCI bus id of every GPU NVML sees (NVML ignores `CUDA_VISIBLE_DEVICES`). NVML must be initialised."""
    return [_nvml_identity(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]


def _nvml_identity(nvml: Any, index: int) -> NvmlGpuIdentity:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = _attempt(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
    pci = _attempt(lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId))
    return NvmlGpuIdentity(index, uuid, pci)


def match_nvml_index(
    gpus: Sequence[NvmlGpuIdentity],
    *,
    torch_index: int,
    uuid: str | None = None,
    pci_bus_id: str | None = None,
    visible_devices: str | None = None,
    device_order: str | None = None,
    torch_device_count: int | None = None,
) -> int | None:
    """The NVML index of torch's device `torch_index`, or None when it cannot be known. Tried in order: the
    device UUID, the PCI bus id, a `GPU-<uuid prefix>` entry of `CUDA_VISIBLE_DEVICES`, a numeric entry when
    `CUDA_DEVICE_ORDER=PCI_BUS_ID` (NVML enumerates in PCI order; CUDA's default order is "fastest first", so a
    number alone proves nothing), and finally a machine with one GPU. Indexes are never assumed equal."""
    if uuid:
        wanted = _uuid_key(uuid)
        for gpu in gpus:
            if gpu.uuid and _uuid_key(gpu.uuid) == wanted:
                return gpu.index
    wanted_pci = _pci_key(pci_bus_id)
    if wanted_pci is not None:
        for gpu in gpus:
            if _pci_key(gpu.pci_bus_id) == wanted_pci:
                return gpu.index
    entries = [e.strip() for e in visible_devices.split(",")] if visible_devices is not None else None
    entry = entries[torch_index] if entries is not None and 0 <= torch_index < len(entries) else None
    if entry and entry.upper().startswith("GPU-"):
        prefix = _uuid_key(entry)
        found = [gpu.index for gpu in gpus if gpu.uuid and _uuid_key(gpu.uuid).startswith(prefix)]
        return found[0] if len(found) == 1 else None
    if (device_order or "").upper() == "PCI_BUS_ID":
        if entries is None:
            return torch_index if torch_index < len(gpus) else None
        if entry is not None and entry.isdigit() and int(entry) < len(gpus):
            return int(entry)
    if len(gpus) == 1 and torch_device_count in (None, 1) and entry in (None, "0"):
        return gpus[0].index
    return None


def _uuid_key(uuid: str) -> str:
    text = uuid.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def _pci_key(bus_id: str | None) -> tuple[int, int, int] | None:
    """'00000000:19:00.0' or '0000:19:00.0' -> (domain, bus, device)."""
    if not bus_id:
        return None
    try:
        domain, bus, rest = bus_id.strip().split(":")
        return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    except ValueError:
        return None


def _pci_text(domain: int, bus: int, device: int) -> str:
    return f"{int(domain):08x}:{int(bus):02x}:{int(device):02x}.0"
