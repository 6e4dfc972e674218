"""Who may use the API, what they may do, and how much one request or client may hold.

- :mod:`~salara.api.security.tokens`: the access policy, pure: tokens
  (create, hash, identify), rights, contexts and destination allow-lists,
  rate limits, the loopback rule without tokens.
- :mod:`~salara.api.security.middleware`: the ASGI middleware in front of
  every route: authentication, the body size and deadline, token reload.
- :mod:`~salara.api.security.access`: rights checks for routes (FastAPI
  dependencies, ``/v1``'s access) and :func:`~salara.api.security.access.install`.
- :mod:`~salara.api.security.denials`: how a refusal is answered and logged.
- :mod:`~salara.api.security.limits`: limits on the decoded request (JSON
  depth, number and length of fields).
- :mod:`~salara.api.security.connections`: uvicorn's side: connections per
  client address (through trusted reverse proxies too; the count in
  :mod:`~salara.api.security.clientcap`), request header deadline (kept by
  :mod:`~salara.api.security.deadlines`) and size, the answers known at once.
- :mod:`~salara.api.security.serving`: uvicorn's settings from ``[api]``.
- :mod:`~salara.api.security.linger`: the lingering close after a refused body.
- :mod:`~salara.api.security.transport`: each request's transport (one write per answer).

Import from the module that defines a name; nothing is re-exported here.
"""
