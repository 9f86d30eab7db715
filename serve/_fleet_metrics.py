"""``GET /metrics`` of ``edgeseq serve --ray``: every replica's series in one scrape.

Each replica sends its own counters (the same :class:`~edgeseq.serve._metrics.Metrics` as
``edgeseq serve``) with every ledger poll; the replica that answers a scrape renders all of
them, each series labelled ``replica="<id>"`` (sum over it for the fleet), plus the
ledger's view: live replicas, leases per replica, hand-overs and expired leases.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

__all__ = ["metric_samples", "render_fleet"]


def metric_samples(registry: CollectorRegistry) -> list[list[Any]]:
    """A registry's current samples as plain lists (they travel to the ledger)."""
    return [
        [f.name, f.documentation, f.type, [[s.name, dict(s.labels), s.value] for s in f.samples]]
        for f in registry.collect()
    ]


class _Fleet:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render_fleet(fleet: dict[str, Any], own: dict[str, Any]) -> str:
    """Prometheus text of every replica in ``fleet`` (the ledger's view), with ``own`` (the
    answering replica's fresh status) replacing its own possibly older entry."""
    replicas = {r["replica"]: r for r in fleet["replicas"]}
    replicas[own["replica"]] = {**replicas.get(own["replica"], {}), **own}
    families: dict[str, Metric] = {}
    for rid, status in sorted(replicas.items()):
        for name, doc, typ, samples in status.get("metrics", []):
            fam = families.setdefault(name, Metric(name, doc, typ))
            for sample, labels, value in samples:
                fam.add_sample(sample, {**labels, "replica": rid}, value)
    live = GaugeMetricFamily("edgeseq_fleet_replicas", "Replicas the ledger hears from.")
    live.add_metric([], len(replicas))
    owned = GaugeMetricFamily(
        "edgeseq_fleet_owned_streams", "Stream leases each replica holds.", labels=["replica"]
    )
    for rid, status in sorted(replicas.items()):
        owned.add_metric([rid], status.get("owned", 0))
    moved = CounterMetricFamily(
        "edgeseq_fleet_handovers", "Streams handed over between live replicas (exactly)."
    )
    moved.add_metric([], fleet.get("handovers", 0))
    expired = CounterMetricFamily(
        "edgeseq_fleet_expired_streams",
        "Streams whose replica went silent (presumed dead); they resume from their last save.",
    )
    expired.add_metric([], fleet.get("expired", 0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fleet([*families.values(), live, owned, moved, expired]))  # type: ignore[arg-type]
    return generate_latest(registry).decode()
