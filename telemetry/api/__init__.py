"""REST routes (aiohttp), mounted on ComfyUI's PromptServer by the plugin or on the standalone watcher's app."""
