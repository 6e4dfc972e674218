"""The durable store: call events waiting for the CRM, their attempts, call tracking, idempotency keys.

- :mod:`salara.store.interface`: :class:`~salara.store.interface.Store`, what every driver does, and
  what its rows mean;
- :mod:`salara.store.records`: the records it hands out and takes;
- :mod:`salara.store.sqlite`: :class:`~salara.store.sqlite.Outbox`, the driver on a SQLite file,
  with its SQL in :mod:`salara.store.schema` and :mod:`salara.store.queries`;
- :mod:`salara.store.postgres`: :class:`~salara.store.postgres.PostgresStore`, the driver on a
  PostgreSQL database shared by nodes (claims with a lease), with its SQL in
  :mod:`salara.store.pgstatements` and :mod:`salara.store.pgqueries`, its schema in the migrations
  run by :mod:`salara.store.migrate` (``salara db migrate``), its wake-ups of other nodes'
  workers in :mod:`salara.store.pglisten`;
- :mod:`salara.store.opening`: :func:`~salara.store.opening.open_store`, the store ``[outbox]`` names.
"""
