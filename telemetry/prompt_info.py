"""What can be read from an API-format prompt alone: its structure fingerprint, key parameters, labels and a
derived name. Pure functions; used by the collector on the recorder thread, never on ComfyUI's worker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .jsonsafe import storable_text
from .model import RunLabels

LABEL_NODE_TYPE = "RunTelemetryLabel"

# Input names whose literal values are kept as run parameters, by the parameter they feed.
_SCALAR_INPUTS: dict[str, tuple[str, ...]] = {
    "width": ("width",),
    "height": ("height",),
    "batch": ("batch_size", "amount"),
    "frames": ("length", "frames", "num_frames", "frame_count", "video_frames"),
    "steps": ("steps",),
    "cfg": ("cfg",),
    "denoise": ("denoise",),
    "sampler": ("sampler_name",),
    "scheduler": ("scheduler",),
    "checkpoint": ("ckpt_name", "unet_name", "model_name"),
    "vae": ("vae_name",),
}
_LORA_INPUTS = ("lora_name",)
_SOURCE_PREFIXES = ("Empty",)


def is_link(value: Any) -> bool:
    """ComfyUI's link form: [source_node_id, output_index]."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def prompt_nodes(prompt: Any) -> dict[str, dict[str, Any]]:
    """The prompt's nodes, skipping anything malformed (a recorded run must never fail on odd input)."""
    if not isinstance(prompt, Mapping):
        return {}
    return {str(k): v for k, v in prompt.items() if isinstance(v, Mapping)}


def class_type_of(node: Mapping[str, Any]) -> str:
    value = node.get("class_type")
    return value if isinstance(value, str) and value else "unknown"


def fingerprint(prompt: Any) -> str:
    """A hash of the graph's structure: node types, links and input names, not input values.

    The same graph with another seed, prompt text or checkpoint has the same fingerprint.
    """
    canonical = []
    for node_id, node in sorted(prompt_nodes(prompt).items()):
        inputs = node.get("inputs") if isinstance(node.get("inputs"), Mapping) else {}
        shape = []
        for name in sorted(inputs):
            value = inputs[name]
            shape.append([name, [str(value[0]), value[1]] if is_link(value) else None])
        canonical.append([node_id, class_type_of(node), shape])
    blob = json.dumps(canonical, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _literal(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and not isinstance(value, list)


def _source_rank(class_type: str) -> int:
    return 0 if class_type.startswith(_SOURCE_PREFIXES) else 1


def extract_parameters(prompt: Any) -> dict[str, Any]:
    """Key generation parameters (size, batch, frames, steps, cfg, sampler, scheduler, models, LoRAs).

    When several nodes carry the same input, nodes that create the latent or image ("Empty...") win for sizes,
    then the lowest node id, so the choice is stable between runs of the same graph.
    """
    params: dict[str, Any] = {}
    loras: list[str] = []
    nodes = sorted(prompt_nodes(prompt).items(), key=lambda kv: (_source_rank(class_type_of(kv[1])), _id_key(kv[0])))
    for _node_id, node in nodes:
        inputs = node.get("inputs")
        if not isinstance(inputs, Mapping):
            continue
        for param, names in _SCALAR_INPUTS.items():
            if param in params:
                continue
            for name in names:
                value = inputs.get(name)
                if value is not None and _literal(value):
                    params[param] = value
                    break
        for name in _LORA_INPUTS:
            value = inputs.get(name)
            if isinstance(value, str) and value not in loras:
                loras.append(value)
    if loras:
        params["loras"] = loras
    width, height = params.get("width"), params.get("height")
    if isinstance(width, (int, float)) and isinstance(height, (int, float)):
        params["pixels"] = int(width) * int(height)
    return params


def _id_key(node_id: str) -> tuple[int, str]:
    head = node_id.split(":")[0]
    return (int(head), node_id) if head.isascii() and head.isdigit() else (1 << 30, node_id)  # "¹".isdigit()


def _clean_text(value: Any, limit: int = 500) -> str | None:
    """A label as given, trimmed and bounded, as storable text (`jsonsafe.storable_text`: NUL and lone
    surrogates become U+FFFD). Other control characters and bidi overrides are kept."""
    if isinstance(value, str) and value.strip():
        return storable_text(value.strip()[:limit])
    return None


def split_tags(value: Any) -> list[str]:
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return []
    tags: list[str] = []
    for item in items:
        text = _clean_text(item, 100) if isinstance(item, str) else None
        if text and text not in tags:
            tags.append(text)
    return tags


def extract_labels(prompt: Any, telemetry_extra: Any) -> RunLabels:
    """Labels from Run Label nodes in the graph, then from `extra_data["telemetry"]` (API clients win)."""
    labels = RunLabels()
    for _node_id, node in sorted(prompt_nodes(prompt).items(), key=lambda kv: _id_key(kv[0])):
        if class_type_of(node) != LABEL_NODE_TYPE:
            continue
        inputs = node.get("inputs") if isinstance(node.get("inputs"), Mapping) else {}
        labels.story_title = labels.story_title or _clean_text(inputs.get("story_title"))
        labels.scene = labels.scene or _clean_text(inputs.get("scene"))
        for tag in split_tags(inputs.get("tags")):
            if tag not in labels.tags:
                labels.tags.append(tag)
    if isinstance(telemetry_extra, Mapping):
        labels.story_title = _clean_text(telemetry_extra.get("story_title")) or labels.story_title
        labels.scene = _clean_text(telemetry_extra.get("scene")) or labels.scene
        for tag in split_tags(telemetry_extra.get("tags")):
            if tag not in labels.tags:
                labels.tags.append(tag)
    return labels


def derive_workflow_name(prompt: Any, output_node_ids: Iterable[str] = ()) -> str:
    """A readable name for a graph that arrived without one: its model and its output node types."""
    nodes = prompt_nodes(prompt)
    outputs = [nodes[i] for i in output_node_ids if i in nodes]
    output_types = sorted({class_type_of(n) for n in outputs}) or sorted(
        {class_type_of(n) for n in nodes.values() if class_type_of(n).startswith(("Save", "Preview"))}
    )
    params = extract_parameters(prompt)
    head = params.get("checkpoint")
    if isinstance(head, str):
        head = head.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    else:
        sources = sorted({class_type_of(n) for n in nodes.values() if class_type_of(n).startswith(_SOURCE_PREFIXES)})
        head = sources[0] if sources else None
    tail = " + ".join(output_types[:3]) if output_types else f"{len(nodes)} nodes"
    return f"{head} → {tail}" if head else tail


def upstream_nodes(prompt: Any, targets: Iterable[str]) -> set[str]:
    """Every node that the target nodes depend on, the targets included."""
    nodes = prompt_nodes(prompt)
    seen: set[str] = set()
    stack = [t for t in targets if t in nodes]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        inputs = nodes[node_id].get("inputs")
        if isinstance(inputs, Mapping):
            for value in inputs.values():
                if is_link(value) and value[0] in nodes and value[0] not in seen:
                    stack.append(value[0])
    return seen
