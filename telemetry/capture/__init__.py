"""Capture: the only part of the pack that knows how ComfyUI events and hardware readings arrive."""
