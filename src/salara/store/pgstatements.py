"""The SQL statements of the PostgreSQL store (its tables: ``migrations/0001_init.sql``).

The same rows and meaning as the SQLite store's (:mod:`salara.store.statements`),
plus the claim's lease: a delivery in flight (``sending``) names the node that
claimed it (``claimed_by``) and until when (``lease_until``, Unix s); past it,
another node may claim it again. Outcomes and releases change a delivery only
while the node that reports them holds it. Parameters are named
(``%(name)s``) where one is used twice, else positional (``%s``).
"""

from __future__ import annotations

from typing import Final

OPEN: Final = "('blocked', 'ready', 'sending')"
"""The statuses of a delivery not done yet, as SQL."""

# -- events and deliveries ---------------------------------------------------------

INSERT_EVENT: Final = (
    "INSERT INTO events (id, call_key, type, body, compat, created_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING seq"
)
# A new delivery is ready unless an earlier one of its call to the same endpoint is still open.
INSERT_DELIVERY: Final = f"""
INSERT INTO deliveries (seq, endpoint, call_key, status, compat, created_at, next_attempt_at)
VALUES (%(seq)s, %(endpoint)s, %(call_key)s,
        CASE WHEN EXISTS (SELECT 1 FROM deliveries
                          WHERE endpoint = %(endpoint)s AND call_key = %(call_key)s AND status IN {OPEN})
             THEN 'blocked' ELSE 'ready' END,
        %(compat)s, %(at)s, %(at)s)
"""
# Make the oldest blocked delivery of a call to an endpoint ready, unless the call has one open there.
PROMOTE: Final = """
UPDATE deliveries SET status = 'ready'
WHERE (seq, endpoint) = (SELECT seq, endpoint FROM deliveries
                         WHERE endpoint = %(endpoint)s AND call_key = %(call_key)s AND status = 'blocked'
                         ORDER BY seq LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM deliveries
                  WHERE endpoint = %(endpoint)s AND call_key = %(call_key)s AND status IN ('ready', 'sending'))
"""
# Due deliveries, and those in flight whose claim by another node has lapsed; rows another node is
# claiming at this moment are skipped, not waited for.
CLAIM: Final = """
WITH due AS (
    SELECT seq, endpoint FROM deliveries
    WHERE endpoint = %(endpoint)s
      AND ((status = 'ready' AND next_attempt_at <= %(now)s)
           OR (status = 'sending' AND lease_until <= %(now)s AND claimed_by IS DISTINCT FROM %(node)s))
    ORDER BY next_attempt_at, seq LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries AS d SET status = 'sending', claimed_by = %(node)s, lease_until = %(until)s
FROM due, events AS e
WHERE d.seq = due.seq AND d.endpoint = due.endpoint AND e.seq = d.seq
RETURNING d.seq, e.id, d.call_key, CASE WHEN d.compat THEN coalesce(e.compat, e.body) ELSE e.body END, d.attempts,
          d.endpoint, e.created_at, d.next_attempt_at
"""
RENEW: Final = """
UPDATE deliveries SET lease_until = %(until)s
WHERE endpoint = %(endpoint)s AND status = 'sending' AND claimed_by = %(node)s
"""
HELD: Final = "seq = %(seq)s AND endpoint = %(endpoint)s AND status = 'sending' AND claimed_by = %(node)s"
DELIVERED: Final = f"""
UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, done_at = %(at)s,
                      last_status = %(http_status)s, last_error = NULL, claimed_by = NULL, lease_until = NULL
WHERE {HELD}
"""
DEAD: Final = f"""
UPDATE deliveries SET status = 'dead', attempts = attempts + 1, done_at = %(at)s,
                      last_status = %(http_status)s, last_error = %(error)s, claimed_by = NULL, lease_until = NULL
WHERE {HELD}
"""
RETRY: Final = f"""
UPDATE deliveries SET status = 'ready', attempts = attempts + 1, next_attempt_at = %(next_attempt_at)s,
                      last_status = %(http_status)s, last_error = %(error)s, claimed_by = NULL, lease_until = NULL
WHERE {HELD}
"""
RELEASE: Final = f"UPDATE deliveries SET status = 'ready', claimed_by = NULL, lease_until = NULL WHERE {HELD}"
LOG_ATTEMPT: Final = """
INSERT INTO attempts (endpoint, event_id, at, outcome, http_status, error, latency_ms, answer)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
# The earliest ready delivery, or the earliest lapse of another node's claim.
NEXT_DUE: Final = """
SELECT least((SELECT min(next_attempt_at) FROM deliveries WHERE endpoint = %(endpoint)s AND status = 'ready'),
             (SELECT min(lease_until) FROM deliveries
              WHERE endpoint = %(endpoint)s AND status = 'sending' AND claimed_by IS DISTINCT FROM %(node)s))
"""
REQUEUE: Final = """
UPDATE deliveries SET attempts = 0, done_at = NULL, next_attempt_at = %s, status = 'blocked'
WHERE seq = %s AND endpoint = %s AND status IN ('dead', 'delivered')
"""
# At the start of the node that claimed them: its claims are not in flight any more.
RESUME: Final = """
UPDATE deliveries SET status = 'ready', claimed_by = NULL, lease_until = NULL
WHERE status = 'sending' AND claimed_by = %s
"""
WAKE: Final = "SELECT pg_notify('salara_outbox', '')"  # at commit, to every node listening (salara.store.pglisten)
HEADS: Final = "SELECT DISTINCT endpoint, call_key FROM deliveries WHERE status = 'blocked'"

# Events delivered everywhere before %(before)s (or that no endpoint got), oldest first; a dead delivery keeps
# its event.
DONE_EVENTS: Final = """
SELECT seq FROM events AS e
WHERE e.created_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM deliveries AS d
                  WHERE d.seq = e.seq AND (d.status <> 'delivered' OR d.done_at >= %(before)s))
ORDER BY seq LIMIT %(limit)s
"""
DELETE_EVENTS: Final = "DELETE FROM events WHERE seq = ANY(%s)"  # their deliveries go with them (ON DELETE CASCADE)
# Over max_rows: the oldest events with a delivery still open, but none in flight.
VICTIMS: Final = """
SELECT e.seq FROM events AS e
WHERE NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.seq = e.seq AND d.status = 'sending')
ORDER BY e.seq LIMIT %s
"""
OPEN_OF: Final = f"SELECT DISTINCT endpoint, call_key FROM deliveries WHERE seq = ANY(%s) AND status IN {OPEN}"
DEPTH: Final = f"SELECT count(*) FROM deliveries WHERE status IN {OPEN}"
COUNT_EVENTS: Final = "SELECT count(*) FROM events"
PRUNE_ATTEMPTS: Final = "DELETE FROM attempts WHERE at < %s"
TRIM_ATTEMPTS: Final = "DELETE FROM attempts WHERE seq <= (SELECT max(seq) FROM attempts) - %s"

# -- endpoints -------------------------------------------------------------------------

DISABLE: Final = """
INSERT INTO endpoint_state (endpoint, disabled_at, reason) VALUES (%s, %s, %s)
ON CONFLICT (endpoint) DO UPDATE SET disabled_at = excluded.disabled_at, reason = excluded.reason
"""
# Enabling wakes every node's workers (salara.store.pglisten): one row per endpoint enabled.
ENABLE: Final = """
WITH enabled AS (DELETE FROM endpoint_state WHERE endpoint = %s RETURNING 1)
SELECT pg_notify('salara_outbox', '') FROM enabled
"""
DISABLED: Final = "SELECT endpoint, disabled_at, reason FROM endpoint_state WHERE disabled_at IS NOT NULL"

# -- call tracking ---------------------------------------------------------------

END_CALL: Final = "DELETE FROM tracked_calls WHERE linkedid = %s"
REMOVE_CHANNEL: Final = "DELETE FROM live_channels WHERE uniqueid = %s"
PUT_CALL: Final = """
INSERT INTO tracked_calls (linkedid, caller, exten, source, started_at, client_state, answered_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (linkedid) DO UPDATE SET caller = excluded.caller, exten = excluded.exten, source = excluded.source,
    started_at = excluded.started_at, client_state = excluded.client_state, answered_at = excluded.answered_at
"""
PUT_CHANNEL: Final = """
INSERT INTO live_channels (uniqueid, linkedid, name, state, caller, exten) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (uniqueid) DO UPDATE SET linkedid = excluded.linkedid, name = excluded.name, state = excluded.state,
    caller = excluded.caller, exten = excluded.exten
"""
LOAD_CALLS: Final = (
    "SELECT linkedid, caller, exten, source, started_at, client_state, answered_at FROM tracked_calls"
    " ORDER BY started_at, linkedid"
)
LOAD_CHANNELS: Final = "SELECT uniqueid, linkedid, name, state, caller, exten FROM live_channels ORDER BY uniqueid"

# -- idempotency keys ------------------------------------------------------------

PUT_KEY: Final = """
INSERT INTO idempotency_keys (scope, key, fingerprint, created_at, result) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = excluded.created_at,
    result = excluded.result
"""
COUNT_KEYS: Final = "SELECT count(*) FROM idempotency_keys"
# The oldest first; ties (same created_at) in key order (bytewise), so the cut is well defined.
TRIM_KEYS: Final = """
DELETE FROM idempotency_keys WHERE (scope, key) IN
    (SELECT scope, key FROM idempotency_keys ORDER BY created_at, scope COLLATE "C", key COLLATE "C" LIMIT %s)
"""
EXPIRE_KEYS: Final = "DELETE FROM idempotency_keys WHERE scope = %s AND created_at < %s"
GET_KEY: Final = "SELECT fingerprint, result FROM idempotency_keys WHERE scope = %s AND key = %s"
