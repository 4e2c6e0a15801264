"""Counting the frames of an animation or video output from its file (recorder thread only)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..model import RunOutput

log = logging.getLogger("run_telemetry.frames")

DirectoryResolver = Callable[[str], "str | None"]


def comfy_directory_resolver() -> DirectoryResolver:
    """Maps an output's `type` (output, temp, input) to its folder through ComfyUI's folder_paths."""
    def resolve(kind: str) -> str | None:
        try:
            import folder_paths  # ComfyUI's module

            return folder_paths.get_directory_by_type(kind)
        except Exception:
            return None
    return resolve


def make_frame_counter(resolve_directory: DirectoryResolver) -> Callable[[RunOutput], int | None]:
    def count(output: RunOutput) -> int | None:
        base = resolve_directory(output.type or "output")
        if not base or not output.filename:
            return None
        root = os.path.realpath(base)
        path = os.path.realpath(os.path.join(root, output.subfolder or "", output.filename))
        if not path.startswith(root + os.sep) or not os.path.isfile(path):
            return None
        return count_frames(path)
    return count


def count_frames(path: str) -> int | None:
    """Frames in an image animation (Pillow) or a video container (PyAV); None when unknown."""
    ext = path.rsplit(".", 1)[-1].lower()
    if ext in ("gif", "webp", "png", "apng"):
        try:
            from PIL import Image

            with Image.open(path) as image:
                return int(getattr(image, "n_frames", 1))
        except Exception as exc:
            log.debug("could not count frames of %s: %s", path, exc)
            return None
    try:
        import av

        with av.open(path) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                return None
            if stream.frames:
                return int(stream.frames)
            return sum(1 for _ in container.demux(stream) if _.size)
    except Exception as exc:
        log.debug("could not count frames of %s: %s", path, exc)
        return None
