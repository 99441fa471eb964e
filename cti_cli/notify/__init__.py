"""Getting messages to the service desk: the durable outbox and the signed webhook deliverer."""

from cti_cli.notify.outbox import Item, Outbox, OutboxError
from cti_cli.notify.signing import sign, verify
from cti_cli.notify.webhook import DeliveryResult, WebhookDeliverer

__all__ = [
    "DeliveryResult",
    "Item",
    "Outbox",
    "OutboxError",
    "WebhookDeliverer",
    "sign",
    "verify",
]
