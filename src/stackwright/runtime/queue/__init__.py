"""Durable at-least-once work queue with a dead-letter queue, on Redis Streams or SQS.

Pick the backend with :func:`queue_from_url`; code against :class:`Queue` only.
"""

from stackwright.runtime.queue.base import Message, Queue, QueueError, queue_from_url

__all__ = ["Message", "Queue", "QueueError", "queue_from_url"]
