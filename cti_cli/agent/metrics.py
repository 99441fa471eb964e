"""The agent's Prometheus metrics (`GET /metrics`), on a registry of its own.

Hot-path counts (AMI events by name) are plain dict increments read at scrape time by a
collector, so a busy PBX pays nothing for them. Labels carry only event names, outcomes and a
webhook's name or host — never a secret, a URL path (Zammad's token lives there) or a number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cti_cli.notify.webhook import host_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
POP_OUTCOMES = ("delivered", "expired", "dead", "rule_error", "skipped")


def webhook_label(url: str) -> str:
    """A webhook as a label: scheme://host[:port] (no path, no query: either may hold a token)."""
    return host_of(url)


class _Live(Collector):
    """Values read from the agent when scraped."""

    def __init__(
        self,
        events: dict[str, int],
        connected: Callable[[], dict[str, bool]],
        active_calls: Callable[[], int],
        outbox_depth: Callable[[], dict[str, int]],
        skipped: Callable[[], Mapping[bytes, int]],
    ) -> None:
        self.events = events
        self.skipped = skipped
        self.connected = connected
        self.active_calls = active_calls
        self.outbox_depth = outbox_depth

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "cti_ami_connected", "1 while logged in to the PBX's AMI, else 0", labels=["pbx"]
        )
        for pbx, connected in self.connected().items():
            up.add_metric([pbx], 1.0 if connected else 0.0)
        yield up
        events = CounterMetricFamily(
            "cti_ami_events", "AMI events received, by event name", labels=["event"]
        )
        counts = dict(self.events)
        for raw, count in self.skipped().items():  # received, and dropped unread
            name = raw.decode("utf-8", "replace")
            counts[name] = counts.get(name, 0) + count
        for name, count in sorted(counts.items()):
            events.add_metric([name], count)
        yield events
        calls = GaugeMetricFamily("cti_active_calls", "Calls in progress the agent follows")
        calls.add_metric([], self.active_calls())
        yield calls
        depth = GaugeMetricFamily(
            "cti_outbox_depth", "Deliveries waiting in the outbox", labels=["webhook"]
        )
        for label, count in sorted(self.outbox_depth().items()):
            depth.add_metric([label], count)
        yield depth


class AgentMetrics:
    """Everything `/metrics` shows; the agent calls the `record_*` methods."""

    def __init__(
        self,
        connected: Callable[[], dict[str, bool]],
        active_calls: Callable[[], int],
        outbox_depth: Callable[[], dict[str, int]],
        skipped: Callable[[], Mapping[bytes, int]] = dict,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events: dict[str, int] = {}
        self.registry.register(
            _Live(self.events, connected, active_calls, outbox_depth, skipped)
        )
        self.logins = Counter(
            "cti_ami_logins", "Successful AMI logins", registry=self.registry
        )
        self.reconnects = Counter(
            "cti_ami_reconnects", "AMI connections lost after a login", registry=self.registry
        )
        self.pops = Counter(
            "cti_pops", "Screen pops by outcome", ["outcome"], registry=self.registry
        )
        for outcome in POP_OUTCOMES:
            self.pops.labels(outcome)
        self.deliveries = Counter(
            "cti_webhook_deliveries",
            "Webhook requests by event and outcome",
            ["webhook", "event", "outcome"],
            registry=self.registry,
        )
        self._delivery_counts: dict[tuple[str, str, str], Counter] = {}
        self._latencies: dict[str, Histogram] = {}
        self.latency = Histogram(
            "cti_webhook_latency_seconds",
            "Webhook request time, request sent to answer",
            ["webhook"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.publishes = Counter(
            "cti_publish",
            "Event-bus publishes ([[publish]]) by event and outcome",
            ["target", "event", "outcome"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "cti_publish_latency_seconds",
            "Event-bus publish time, message sent to the broker's ack",
            ["target"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.lease_holder = Gauge(
            "cti_lease_holder",
            "1 while this agent holds its PBX's lease (or has none configured), 0 on standby",
            registry=self.registry,
        )
        self.lease_holder.set(1)
        self.takeovers = Counter(
            "cti_lease_takeovers", "Times this agent took the lease over", registry=self.registry
        )
        self.rule_seconds = Histogram(
            "cti_rule_seconds",
            "Time one run of the rule took",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=self.registry,
        )

    def delivery(self, webhook: str, event: str, outcome: str, latency: float | None) -> None:
        """One webhook request's outcome (and its time, when it got an answer). The labelled
        children are kept here: `labels()` takes a lock and checks its arguments, four or five
        times per call otherwise."""
        key = (webhook, event, outcome)
        count = self._delivery_counts.get(key)
        if count is None:
            count = self._delivery_counts[key] = self.deliveries.labels(*key)
        count.inc()
        if latency is not None:
            timing = self._latencies.get(webhook)
            if timing is None:
                timing = self._latencies[webhook] = self.latency.labels(webhook)
            timing.observe(latency)

    def render(self) -> bytes:
        return generate_latest(self.registry)
