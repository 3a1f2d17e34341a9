"""Where alerts go: a webhook, a Slack incoming webhook, e-mail (all optional)."""

from __future__ import annotations

import dagster as dg

from spanda_assets.lib.alerts import Destination, destinations_from_env


class AlertDestinationsResource(dg.ConfigurableResource):
    """The alert destinations the environment configures.

    Read at run time from SPANDA_ALERT_WEBHOOK_URL, SPANDA_ALERT_SLACK_WEBHOOK_URL and
    SPANDA_ALERT_SMTP_HOST / _PORT / _FROM / _TO (_USER / _PASSWORD). Webhook URLs and the
    SMTP password are secrets: they are never stored in the resource's config, logged or
    shown in the UI; only the kind of each destination is.
    """

    def destinations(self) -> list[Destination]:
        return destinations_from_env()

    def describe(self) -> list[str]:
        return [d.name for d in self.destinations()]
