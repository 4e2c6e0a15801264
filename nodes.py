"""The pack's nodes. Run Label tags a run with a story title, a scene and tags, read from the graph itself."""

from __future__ import annotations

from typing import Any


class RunTelemetryLabel:
    """An output node a user drops anywhere in a graph: its inputs become the run's labels.

    The recorder reads them from the prompt (telemetry.prompt_info.extract_labels), so the node itself does
    nothing but pass its optional input through.
    """

    CATEGORY = "utils/telemetry"
    FUNCTION = "label"
    OUTPUT_NODE = True
    RETURN_TYPES = ("*",)
    RETURN_NAMES = ("passthrough",)
    DESCRIPTION = "Labels this run in Run Telemetry (story title, scene, comma-separated tags)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "story_title": ("STRING", {"default": "", "tooltip": "Groups runs of one story or project"}),
                "scene": ("STRING", {"default": "", "tooltip": "The scene or shot this run renders"}),
                "tags": ("STRING", {"default": "", "tooltip": "Comma-separated tags"}),
            },
            "optional": {"passthrough": ("*", {"tooltip": "Anything; passed through unchanged"})},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, input_types: dict[str, Any] | None = None, **_: Any) -> bool:
        return True

    def label(self, story_title: str, scene: str, tags: str, passthrough: Any = None) -> tuple[Any]:
        return (passthrough,)


NODE_CLASS_MAPPINGS = {"RunTelemetryLabel": RunTelemetryLabel}
NODE_DISPLAY_NAME_MAPPINGS = {"RunTelemetryLabel": "Run Label (Telemetry)"}
