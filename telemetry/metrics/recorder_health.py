"""A collector for the recorder's state, read from its in-memory health at each scrape (never the database)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "comfyui_telemetry_"


class RecorderHealthCollector(Collector):
    def __init__(self, instance: str, health: Callable[[], Mapping[str, Any]]) -> None:
        self.instance = instance
        self.health = health

    def describe(self) -> Iterator[Metric]:
        return self._families({})

    def collect(self) -> Iterator[Metric]:
        return self._families(self.health())

    def _families(self, h: Mapping[str, Any]) -> Iterator[Metric]:
        labels = ["comfyui_instance"]
        for name, key, help_text in (
            ("recorder_buffered_runs", "buffered", "Runs waiting in memory for the database."),
            ("recorder_queue_depth", "queue_depth", "Records waiting for the recorder thread."),
        ):
            family = GaugeMetricFamily(PREFIX + name, help_text, labels=labels)
            if h:
                family.add_metric([self.instance], int(h.get(key) or 0))
            yield family
        dropped = CounterMetricFamily(PREFIX + "recorder_dropped_runs", "Run records that could not be kept.",
                                      labels=labels)
        up = GaugeMetricFamily(PREFIX + "database_up", "1 when the telemetry database accepts writes.", labels=labels)
        if h:
            dropped.add_metric([self.instance], int(h.get("dropped") or 0))
            up.add_metric([self.instance], 1 if h.get("database_ready") else 0)
        yield dropped
        yield up
