"""Concrete advice drawn from a run's parameters and the node involved: the "action" text of recommendations.

Pure string building; the rules in `rules.py` choose when to give it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MODEL_KEYS = ("checkpoint", "vae", "loras", "sampler", "scheduler", "cfg", "denoise")


def _int(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def describe_size(params: Mapping[str, Any]) -> str:
    """" at 1024x1024, batch 4, 81 frames" (only what is known), or ""."""
    parts = []
    width, height = _int(params, "width"), _int(params, "height")
    if width and height:
        parts.append(f"{width}x{height}")
    batch, frames = _int(params, "batch"), _int(params, "frames")
    if batch and batch > 1:
        parts.append(f"batch {batch}")
    if frames and frames > 1:
        parts.append(f"{frames} frames")
    return (" at " + ", ".join(parts)) if parts else ""


def memory_advice(params: Mapping[str, Any], node_type: str | None, on_gpu: bool = True) -> str:
    """Concrete steps drawn from the run. `on_gpu=False` (a run with no GPU recorded: it ran out of system RAM)
    drops the GPU-only steps."""
    steps = []
    batch, frames = _int(params, "batch"), _int(params, "frames")
    width, height = _int(params, "width"), _int(params, "height")
    if batch and batch > 1:
        steps.append(f"lower the batch size from {batch} to {max(1, batch // 2)}")
    if node_type and "VAE" in node_type and "Tiled" not in node_type:
        steps.append("decode the VAE in tiles (VAE Decode (Tiled))")
    elif node_type is None or "Decode" not in (node_type or ""):
        steps.append("decode the VAE in tiles (VAE Decode (Tiled)) if the peak is at the end of the run")
    if frames and frames > 16:
        steps.append(f"split the {frames} frames into shorter scenes (e.g. {max(1, frames // 2)} frames each)")
    if width and height and width * height > 1024 * 1024:
        steps.append(f"render at a lower resolution than {width}x{height} and upscale afterwards")
    if on_gpu:
        steps.append("start ComfyUI with --lowvram (or --reserve-vram) so weights are offloaded")
    else:
        steps.append("free system RAM (close other programs) or add RAM or swap")
    where = f" ({node_type})" if node_type else ""
    return f"To fit in {'GPU memory' if on_gpu else 'memory'}{where}: " + "; ".join(steps) + "."


def speed_advice(params: Mapping[str, Any]) -> str:
    tips = []
    steps, frames = _int(params, "steps"), _int(params, "frames")
    if steps and steps > 20:
        tips.append(f"fewer sampling steps than {steps} (or a faster sampler / distilled model)")
    if frames and frames > 16:
        tips.append(f"shorter scenes than {frames} frames")
    width, height = _int(params, "width"), _int(params, "height")
    if width and height and width * height > 1024 * 1024:
        tips.append(f"a lower resolution than {width}x{height}, upscaled afterwards")
    if not tips:
        tips.append("fewer steps, a lower resolution or a faster sampler")
    return "If this is longer than you want, try " + "; ".join(tips) + "."


def node_advice(class_type: str, params: Mapping[str, Any]) -> str:
    lowered = class_type.lower()
    if "sampler" in lowered:
        return speed_advice(params) + " Sampling dominates this workflow, so its steps and size set the run time."
    if "vae" in lowered and "decode" in lowered:
        return ("VAE decoding dominates: use VAE Decode (Tiled) with a larger tile, or decode fewer frames at a "
                "time.")
    if "loader" in lowered:
        return ("Model loading dominates: keep the same checkpoint between runs so it stays cached, load from a "
                "faster disk, or start ComfyUI with --highvram if memory allows.")
    if "upscale" in lowered:
        return "Upscaling dominates: upscale by a smaller factor, use a lighter upscale model, or tile the upscale."
    return f"{class_type} dominates the run: check its inputs (sizes, counts) and whether a lighter node does the job."


def regression_advice(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    changed = [f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in _MODEL_KEYS if before.get(k) != after.get(k)]
    if changed:
        return "Between the runs before and after, these changed: " + "; ".join(changed) + "."
    return ("The parameters did not change: look for an updated custom node, ComfyUI or GPU driver, other jobs on "
            "the GPU, or model offloading (watch the GPU memory chart of a slow run).")
