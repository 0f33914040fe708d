"""Webhook deliveries acted on (:class:`~active_learning.store.models.WebhookDelivery`): each once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from active_learning.store.base import Repository, aware
from active_learning.store.models import WebhookDelivery, utcnow

KEPT = timedelta(days=1)


class Webhooks(Repository):
    def record(self, key: str, project_id: int, action: str) -> bool:
        """Record a delivery by its key; False when it was recorded before (act on it only once). Deliveries
        older than :data:`KEPT` are dropped on the way."""
        now = utcnow()
        try:
            with self._session() as session:
                session.execute(delete(WebhookDelivery).where(WebhookDelivery.received_at < now - KEPT))
                session.add(WebhookDelivery(key=key, project_id=project_id, action=action, received_at=now))
        except IntegrityError:  # the key, the primary key, is there: recorded before (or just now, by another worker)
            return False
        return True

    def last_received(self, project_id: int) -> datetime | None:
        """When the project's latest delivery was acted on, within :data:`KEPT`; None: none."""
        with self._session() as session:
            return aware(session.scalar(select(func.max(WebhookDelivery.received_at)).where(WebhookDelivery.project_id == project_id)))
