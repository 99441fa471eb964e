"""The closed sets of values the config accepts, written once and without pydantic.

The config model (config_model.py), its error messages and the `cti` options that set these
keys (`configure --auth/--trigger`, `webhooks add --format`) all use these, and the modules
that declare the options can import them without loading the model for `cti --help`.
"""

from __future__ import annotations

from typing import Literal

ServerType = Literal["asterisk-ami"]
AuthMethod = Literal["md5", "plain"]  # the AMI client's AuthType: mypy checks they agree
Trigger = Literal["ring", "answer"]  # when a card pops: the phone rings, or it is answered
WebhookFormat = Literal["json", "zammad"]

# what `events = [...]` of a webhook or an event bus may name
WEBHOOK_EVENTS = ("screen_pop", "call.ringing", "call.answered", "call.transferred", "call.ended")
