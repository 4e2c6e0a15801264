"""A test-only node pack for tests/integration/test_hostile_input_real_comfyui.py: an output node whose UI
result is not JSON (NaN, infinities, an integer beyond 64 bits, control characters), as a custom node may return."""


class RunTelemetryHostileOutput:
    CATEGORY = "testing"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 (ComfyUI's name)
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def run(self, seed):
        return {"ui": {"numbers": [float("nan"), float("inf"), -float("inf"), 2**70, seed],
                       "text": ["\x00nul \u202eevil\u202c \x1b[31mred"], "nested": [{"deep": [[[[1]]]]}]}}


NODE_CLASS_MAPPINGS = {"RunTelemetryHostileOutput": RunTelemetryHostileOutput}
