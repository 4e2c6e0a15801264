"""The exposition: prometheus_client renders the registry, in the format the scraper's Accept header asks for."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The registry's samples and their content type: OpenMetrics when `accept` asks for
    application/openmetrics-text (as Prometheus itself does), else text format 0.0.4."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
