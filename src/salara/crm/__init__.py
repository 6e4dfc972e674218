"""The CRM side of salara: its HTTP client, signed event delivery and the routing lookup.

- :mod:`salara.crm.client`: the HTTP session (:func:`~salara.crm.client.make_client`) and bounded answers;
- :mod:`salara.crm.signing`: Standard Webhooks secrets, signatures and headers;
- :mod:`salara.crm.delivery`: :class:`~salara.crm.delivery.DeliveryWorker`, which posts the store's
  events, as many at once as :class:`~salara.concurrency.AdaptiveLimit` allows;
- :mod:`salara.crm.testpost`: :func:`~salara.crm.testpost.send_test_post`, the CLI's test post;
- :mod:`salara.crm.lookup`: :class:`~salara.crm.lookup.CrmLookup`, which asks where a call goes.
"""
