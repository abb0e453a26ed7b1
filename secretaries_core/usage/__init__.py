"""Token usage per (user, secretary, model, UTC day), and the daily quotas built on it."""

from secretaries_core.usage.book import UsageBook, UsageEntry, UsageReport
from secretaries_core.usage.quotas import Limits, Quotas, Reservation

__all__ = ["Limits", "Quotas", "Reservation", "UsageBook", "UsageEntry", "UsageReport"]
