"""Starts a real ComfyUI with the pack on http://127.0.0.1:8188 and runs a few demo workflows so the panel has
data: successes, a cached rerun, a failure, an interrupted run, a labelled animation. Ctrl-C stops it.

Run through scripts/demo.sh (which provisions ComfyUI first). Data lives in ~/.cache/run-telemetry/demo.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from comfy_harness import (  # noqa: E402
    ComfyServer,
    animated_workflow,
    failing_workflow,
    image_workflow,
    multi_output_workflow,
    slow_workflow,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--base-dir", default=str(Path.home() / ".cache" / "run-telemetry" / "demo"))
    args = parser.parse_args()
    server = ComfyServer(Path(args.base_dir), port=args.port)
    print(f"starting ComfyUI on {server.url} (log: {server.log_path})", flush=True)
    server.start()
    try:
        workflow_ui = {"extra_pnginfo": {"workflow": {"id": "demo-portrait", "nodes": []}},
                       "telemetry": {"workflow_name": "Demo portrait"}}
        for i in range(4):
            server.run_and_wait(image_workflow(width=256 + 64 * i, height=256, batch=2, color=i * 40,
                                               prefix="demo"), extra_data=workflow_ui)
        server.run_and_wait(image_workflow(width=256, height=256, batch=2, color=0, prefix="demo"),
                            extra_data=workflow_ui)  # fully cached rerun
        server.run_and_wait(multi_output_workflow(batch=3))
        labelled = animated_workflow(frames=12)
        labelled["9"] = {"class_type": "RunTelemetryLabel",
                         "inputs": {"story_title": "Demo story", "scene": "Scene 1", "tags": "demo, animation"}}
        server.run_and_wait(labelled)
        server.run_and_wait(failing_workflow(), extra_data={"telemetry": {"workflow_name": "Demo too big"}})
        slow_id = server.submit(slow_workflow(blurs=20))
        server.wait_running(slow_id)
        time.sleep(1.5)
        server.interrupt()
        server.wait_history(slow_id, timeout=120)
        print(f"\nComfyUI with Run Telemetry is running: open {server.url} and the Telemetry tab in the sidebar.")
        print(f"REST: {server.url}/telemetry/runs   Ctrl-C to stop.", flush=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
