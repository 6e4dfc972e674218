"""The durable store: call events waiting for the CRM, their attempts, call tracking, idempotency keys.

- :mod:`salara.store.interface`: :class:`~salara.store.interface.Store`, what every driver does, and
  what its rows mean;
- :mod:`salara.store.records`: the records it hands out and takes;
- :mod:`salara.store.sqlite`: :class:`~salara.store.sqlite.Outbox`, the driver on a SQLite file,
  with its SQL in :mod:`salara.store.schema` and :mod:`salara.store.queries`.
"""
