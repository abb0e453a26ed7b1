"""Scale-out over Redis Streams: ingress of updates, workers, replies, dead letters."""

from secretaries_core.queue.client import Queue, Update
from secretaries_core.queue.keys import QueueKeys

__all__ = ["Queue", "QueueKeys", "Update"]
