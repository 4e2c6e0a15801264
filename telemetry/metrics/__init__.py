"""Prometheus metrics for fleets, built on prometheus_client.

- `runs`: the metric objects (prometheus_client's own Counter/Histogram/Gauge, in a registry of each app's own,
  never the process-wide default one) fed by the recorder as runs are stored;
- `recorder_health`: a collector that reads the recorder's in-memory health at scrape time;
- `exposition`: prometheus_client's text format 0.0.4, or OpenMetrics when the scraper asks for it.

Nothing here reads the database: a scrape costs the same at a million stored runs as at one. Counters start at
zero with the process, as Prometheus expects (rate() handles restarts).
"""

from .exposition import exposition
from .runs import DURATION_BUCKETS_S, INSTANCE_LABEL, MAX_WORKFLOW_SERIES, RunMetrics

__all__ = ["DURATION_BUCKETS_S", "INSTANCE_LABEL", "MAX_WORKFLOW_SERIES", "RunMetrics", "exposition"]
