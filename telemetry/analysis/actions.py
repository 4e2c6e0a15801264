"""Graph changes a recommendation can offer ("Apply to a copy"): concrete edits of the run's own API prompt.

Pure functions from a recommendation (kind + details) and the run behind it (its stored API prompt and
parameters) to `actions`, served on every recommendation by GET /telemetry/recommendations and applied by the
panel to a copy of the workflow (web/src/graph-actions.ts), or by a script to an API prompt:

    {"kind": "halve_batch", "title": "...", "run_id": "...",
     "changes": [{"node_id": "5", "class_type": "EmptyLatentImage", "input": "batch_size", "from": 4, "to": 2}],
     "copies": [...]}   # split_scenes only: one entry {title, scene, changes} per copy to queue

A change either sets an input (`input`, `from`, `to`) or replaces the node's class (`replace_class_type`, the
node keeping its id, links and position); inputs set after a replacement belong to the new class. An action is
only offered when every node and input it names exists in the run's prompt with a literal (unlinked) value.

Kinds and their rules:
- vae_tiled: VAEDecode -> VAEDecodeTiled (oom in a VAEDecode, or a gpu_peak with VAEDecode nodes). Tile size
  (`tile_size_for`): half the image's long side, a quarter on a device of 8 GiB or less, so one tile holds about
  a quarter (a sixteenth) of the frame; rounded down to a multiple of 64 and kept within 256..1024 (ComfyUI's
  default, 512, when the size is unknown). Overlap: an eighth of the tile (ComfyUI's 64 for 512).
- halve_batch: batch_size halved (at least 1) on the latent/image source nodes (oom, gpu_peak).
- lower_steps: the sampler's steps halved (at least `MIN_STEPS`) where a duration rule fires; for dominant_node
  only on nodes of the dominant type, whose `scale_by` is also brought halfway towards 1.
- split_scenes: a frame count (length, frames, ...) over `SPLIT_MIN_FRAMES`, else a batch over it, split into
  copies (oom, gpu_peak, long_duration, duration_above_baseline). With a Run Label node whose scene lists several
  names ("intro, chase, finale") there is one copy per name; otherwise ceil(frames / `SCENE_FRAMES`) copies
  (at most `MAX_SCENES`) labelled "<scene> (part i/n)". A frame count of the form 4k+1 (video models) stays 4k+1
  in every part.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..prompt_info import LABEL_NODE_TYPE, class_type_of, is_link, prompt_nodes

VAE_DECODE = "VAEDecode"
VAE_DECODE_TILED = "VAEDecodeTiled"
MIN_STEPS = 4
SPLIT_MIN_FRAMES = 16
SCENE_FRAMES = 32
MAX_SCENES = 8
SMALL_GPU_BYTES = 8 * 1024**3
_TILE_MIN, _TILE_MAX, _TILE_DEFAULT = 256, 1024, 512
_FRAME_INPUTS = ("length", "frames", "num_frames", "frame_count", "video_frames")
_SOURCE_PREFIXES = ("Empty",)
_SCENE_SEPARATORS = re.compile(r"[,;|\n]")

MEMORY_KINDS = frozenset({"oom", "gpu_peak"})
DURATION_KINDS = frozenset({"long_duration", "duration_above_baseline"})


@dataclass(frozen=True)
class ActionRun:
    """What the actions read of the run behind a recommendation."""

    run_id: str
    prompt: Mapping[str, Any]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    gpu_total_bytes: int | None = None
    error_node_id: str | None = None
    scene: str | None = None


def _int_input(node: Mapping[str, Any], name: str) -> int | None:
    inputs = node.get("inputs")
    value = inputs.get(name) if isinstance(inputs, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or is_link(value):
        return None
    return value


def _float_input(node: Mapping[str, Any], name: str) -> float | None:
    inputs = node.get("inputs")
    value = inputs.get(name) if isinstance(inputs, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _id_order(node_id: str) -> tuple[int, str]:
    head = node_id.split(":")[0]
    return (int(head), node_id) if head.isascii() and head.isdigit() else (1 << 30, node_id)  # "¹".isdigit()


def _sorted(nodes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    return sorted(nodes.items(), key=lambda kv: _id_order(kv[0]))


def set_input(node_id: str, node: Mapping[str, Any], name: str, old: Any, new: Any) -> dict[str, Any]:
    return {"node_id": node_id, "class_type": class_type_of(node), "input": name, "from": old, "to": new}


def _sources(nodes: Mapping[str, Mapping[str, Any]], name: str, minimum: int) -> list[tuple[str, Mapping, int]]:
    """Nodes with a literal int `name` over `minimum`: the latent/image sources ("Empty...") when any has it."""
    found = [(nid, node, value) for nid, node in _sorted(nodes)
             if (value := _int_input(node, name)) is not None and value > minimum]
    sources = [f for f in found if class_type_of(f[1]).startswith(_SOURCE_PREFIXES)]
    return sources or found


# -- vae_tiled ----------------------------------------------------------------------------------------------


def tile_size_for(width: Any, height: Any, gpu_total_bytes: int | None) -> int:
    """The VAEDecodeTiled tile size for an image of width x height pixels (see the module docstring)."""
    sides = [v for v in (width, height) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0]
    if not sides:
        return _TILE_DEFAULT
    divisor = 4 if gpu_total_bytes and gpu_total_bytes <= SMALL_GPU_BYTES else 2
    tile = int(max(sides) // divisor) // 64 * 64
    return max(_TILE_MIN, min(_TILE_MAX, tile))


def vae_tiled(run: ActionRun, node_ids: Iterable[str]) -> dict[str, Any] | None:
    nodes = prompt_nodes(run.prompt)
    targets = [nid for nid in node_ids if nid in nodes and class_type_of(nodes[nid]) == VAE_DECODE]
    if not targets:
        return None
    tile = tile_size_for(run.parameters.get("width"), run.parameters.get("height"), run.gpu_total_bytes)
    overlap = max(32, tile // 8 // 32 * 32)
    changes: list[dict[str, Any]] = []
    for nid in targets:
        changes.append({"node_id": nid, "class_type": VAE_DECODE, "replace_class_type": VAE_DECODE_TILED})
        for name, value in (("tile_size", tile), ("overlap", overlap), ("temporal_size", 64),
                            ("temporal_overlap", 8)):
            changes.append({"node_id": nid, "class_type": VAE_DECODE_TILED, "input": name, "from": None,
                            "to": value})
    return {"kind": "vae_tiled", "title": f"Decode in tiles of {tile} px (VAE Decode (Tiled))",
            "run_id": run.run_id, "changes": changes}


def _vae_targets(kind: str, run: ActionRun) -> list[str]:
    nodes = prompt_nodes(run.prompt)
    decoders = [nid for nid, node in _sorted(nodes) if class_type_of(node) == VAE_DECODE]
    if kind == "oom" and run.error_node_id in nodes:
        return [run.error_node_id] if run.error_node_id in decoders else []
    return decoders


# -- halve_batch ----------------------------------------------------------------------------------------------


def halve_batch(run: ActionRun) -> dict[str, Any] | None:
    found = _sources(prompt_nodes(run.prompt), "batch_size", 1)
    if not found:
        return None
    changes = [set_input(nid, node, "batch_size", value, max(1, value // 2)) for nid, node, value in found]
    first = changes[0]
    return {"kind": "halve_batch", "title": f"Halve the batch size ({first['from']} → {first['to']})",
            "run_id": run.run_id, "changes": changes}


# -- lower_steps ----------------------------------------------------------------------------------------------


def lower_steps(run: ActionRun, class_type: str | None = None) -> dict[str, Any] | None:
    """Halve `steps` on every node with a literal one (only nodes of `class_type` when given); there, also
    bring a `scale_by` over 1 halfway towards 1."""
    changes = []
    for nid, node in _sorted(prompt_nodes(run.prompt)):
        if class_type is not None and class_type_of(node) != class_type:
            continue
        steps = _int_input(node, "steps")
        if steps is not None and steps > MIN_STEPS:
            changes.append(set_input(nid, node, "steps", steps, max(MIN_STEPS, steps // 2)))
        scale = _float_input(node, "scale_by") if class_type is not None else None
        if scale is not None and scale > 1.0:
            changes.append(set_input(nid, node, "scale_by", scale, round(1.0 + (scale - 1.0) / 2, 2)))
    if not changes:
        return None
    first = changes[0]
    what = "steps" if first["input"] == "steps" else "upscale factor"
    title = f"Lower the {what} of {first['class_type']} ({first['from']} → {first['to']})"
    return {"kind": "lower_steps", "title": title, "run_id": run.run_id, "changes": changes}


# -- split_scenes ---------------------------------------------------------------------------------------------


def split_lengths(total: int, parts: int) -> list[int]:
    """`total` frames as `parts` near-equal lengths; a total of the form 4k+1 gives parts of that form."""
    parts = max(1, min(parts, total))
    if total % 4 == 1 and total > 1 and parts <= (total - 1) // 4:
        q, r = divmod((total - 1) // 4, parts)
        return [4 * (q + (1 if i < r else 0)) + 1 for i in range(parts)]
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


def _label_node(nodes: Mapping[str, Mapping[str, Any]]) -> tuple[str, Mapping[str, Any], str] | None:
    for nid, node in _sorted(nodes):
        if class_type_of(node) == LABEL_NODE_TYPE:
            inputs = node.get("inputs") if isinstance(node.get("inputs"), Mapping) else {}
            scene = inputs.get("scene")
            if isinstance(scene, str):
                return nid, node, scene
    return None


def split_scenes(run: ActionRun) -> dict[str, Any] | None:
    nodes = prompt_nodes(run.prompt)
    found = []
    for name in _FRAME_INPUTS:
        found = [(nid, node, value, name) for nid, node, value in _sources(nodes, name, SPLIT_MIN_FRAMES)]
        if found:
            break
    if not found:
        found = [(nid, node, value, "batch_size") for nid, node, value in _sources(nodes, "batch_size",
                                                                                    SPLIT_MIN_FRAMES)]
    if not found:
        return None
    nid, node, total, input_name = found[0]
    label = _label_node(nodes)
    given = label[2] if label else (run.scene or "")
    names = [n.strip() for n in _SCENE_SEPARATORS.split(given) if n.strip()] if label else []
    if len(names) >= 2:
        names = names[:MAX_SCENES]
        lengths = split_lengths(total, len(names))
        names = names[:len(lengths)]
    else:
        lengths = split_lengths(total, min(MAX_SCENES, math.ceil(total / SCENE_FRAMES)))
        base = names[0] if names else given.strip()
        names = [f"{base} (part {i}/{len(lengths)})" if base else f"part {i}/{len(lengths)}"
                 for i in range(1, len(lengths) + 1)]
    copies = []
    for scene, length in zip(names, lengths, strict=True):
        changes = [set_input(nid, node, input_name, total, length)]
        if label:
            changes.append(set_input(label[0], label[1], "scene", label[2], scene))
        copies.append({"title": f"{scene}: {length} of {total} frames", "scene": scene, "changes": changes})
    unit = "frames" if input_name != "batch_size" else "images"
    return {"kind": "split_scenes", "title": f"Split the {total} {unit} into {len(copies)} scenes",
            "run_id": run.run_id, "changes": [], "copies": copies}


# -- per recommendation ---------------------------------------------------------------------------------------


def derive(kind: str, details: Mapping[str, Any], run: ActionRun | None) -> list[dict[str, Any]]:
    """The actions a recommendation of `kind` offers on `run`'s prompt ([] when none applies). Never raises on
    odd prompts: a node or input that is not there is no action."""
    if run is None or not prompt_nodes(run.prompt):
        return []
    found: list[dict[str, Any] | None] = []
    if kind in MEMORY_KINDS:
        found += [vae_tiled(run, _vae_targets(kind, run)), halve_batch(run), split_scenes(run)]
    elif kind in DURATION_KINDS:
        found += [lower_steps(run), split_scenes(run)]
    elif kind == "dominant_node" and isinstance(details.get("node_type"), str):
        found.append(lower_steps(run, details["node_type"]))
    return [a for a in found if a]
