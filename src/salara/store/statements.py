"""The SQL statements of the SQLite store that change and read rows (its tables: :mod:`salara.store.schema`).

Events are rows of ``events``; each endpoint that gets an event has a row in
``deliveries`` with that endpoint's state of it (:mod:`salara.store.interface`).
Parameters are numbered where one is used twice.
"""

from __future__ import annotations

from typing import Final

OPEN: Final = "('blocked', 'ready', 'sending')"
"""The statuses of a delivery not done yet, as SQL."""

# -- events and deliveries ---------------------------------------------------------

INSERT_EVENT: Final = (
    "INSERT INTO events (seq, id, call_key, type, body, compat, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A new delivery is ready unless an earlier one of its call to the same endpoint is still open.
INSERT_DELIVERY: Final = f"""
INSERT INTO deliveries (seq, endpoint, call_key, status, compat, created_at, next_attempt_at)
VALUES (?1, ?2, ?3,
        CASE WHEN EXISTS (SELECT 1 FROM deliveries
                          WHERE endpoint = ?2 AND call_key = ?3 AND status IN {OPEN})
             THEN 'blocked' ELSE 'ready' END,
        ?5, ?4, ?4)
"""
INSERT_BLOCKED_DELIVERY: Final = """
INSERT INTO deliveries (seq, endpoint, call_key, status, compat, created_at, next_attempt_at)
VALUES (?1, ?2, ?3, 'blocked', ?5, ?4, ?4)
"""
LAST_SEQ: Final = "SELECT coalesce(max(seq), 0) FROM events"
# Make the oldest blocked delivery of a call to an endpoint ready, unless the call has one open there.
PROMOTE: Final = """
UPDATE deliveries SET status = 'ready'
WHERE seq = (SELECT seq FROM deliveries WHERE endpoint = ?1 AND call_key = ?2 AND status = 'blocked'
             ORDER BY seq LIMIT 1)
  AND endpoint = ?1
  AND NOT EXISTS (SELECT 1 FROM deliveries WHERE endpoint = ?1 AND call_key = ?2 AND status IN ('ready', 'sending'))
"""
CLAIM: Final = """
SELECT d.seq, e.id, d.call_key, CASE WHEN d.compat THEN coalesce(e.compat, e.body) ELSE e.body END, d.attempts,
       d.endpoint, e.created_at
FROM deliveries AS d JOIN events AS e ON e.seq = d.seq
WHERE d.status = 'ready' AND d.endpoint = ?1 AND d.next_attempt_at <= ?2
ORDER BY d.next_attempt_at, d.seq LIMIT ?3
"""
SENDING: Final = "UPDATE deliveries SET status = 'sending' WHERE seq = ? AND endpoint = ?"
DELIVERED: Final = """
UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, done_at = ?3,
                      last_status = ?4, last_error = NULL
WHERE seq = ?1 AND endpoint = ?2 AND status = 'sending'
"""
DEAD: Final = """
UPDATE deliveries SET status = 'dead', attempts = attempts + 1, done_at = ?3,
                      last_status = ?4, last_error = ?5
WHERE seq = ?1 AND endpoint = ?2 AND status = 'sending'
"""
RETRY: Final = """
UPDATE deliveries SET status = 'ready', attempts = attempts + 1, next_attempt_at = ?6,
                      last_status = ?4, last_error = ?5
WHERE seq = ?1 AND endpoint = ?2 AND status = 'sending'
"""
RELEASE: Final = "UPDATE deliveries SET status = 'ready' WHERE seq = ? AND endpoint = ? AND status = 'sending'"
LOG_ATTEMPT: Final = """
INSERT INTO attempts (endpoint, event_id, at, outcome, http_status, error, latency_ms, answer)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
NEXT_DUE: Final = "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'ready' AND endpoint = ?"
# Done deliveries of a re-sent event start again: blocked, then the oldest of each call is made ready.
REQUEUE: Final = """
UPDATE deliveries SET attempts = 0, done_at = NULL, next_attempt_at = ?3, status = 'blocked'
WHERE seq = ?1 AND endpoint = ?2 AND status IN ('dead', 'delivered')
"""
RESUME: Final = "UPDATE deliveries SET status = 'ready' WHERE status = 'sending'"
HEADS: Final = "SELECT DISTINCT endpoint, call_key FROM deliveries WHERE status = 'blocked'"

# Events delivered everywhere before ?1 (or that no endpoint got), oldest first. A dead delivery keeps its
# event: it stays listed and replayable until an operator sends it again or max_rows pushes it out.
DONE_EVENTS: Final = """
SELECT seq FROM events AS e
WHERE e.created_at < ?1
  AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.seq = e.seq AND (d.status != 'delivered' OR d.done_at >= ?1))
ORDER BY seq LIMIT ?2
"""
DELETE_EVENT: Final = "DELETE FROM events WHERE seq = ?"
DELETE_DELIVERIES: Final = "DELETE FROM deliveries WHERE seq = ?"
# Over max_rows: the oldest events with a delivery still open, but none in flight.
VICTIMS: Final = """
SELECT e.seq FROM events AS e
WHERE NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.seq = e.seq AND d.status = 'sending')
ORDER BY e.seq LIMIT ?
"""
OPEN_OF: Final = f"SELECT endpoint, call_key FROM deliveries WHERE seq = ? AND status IN {OPEN}"
DEPTH: Final = f"SELECT count(*) FROM deliveries WHERE status IN {OPEN}"

# -- endpoints -------------------------------------------------------------------------

DISABLE: Final = "INSERT OR REPLACE INTO endpoint_state (endpoint, disabled_at, reason) VALUES (?, ?, ?)"
ENABLE: Final = "DELETE FROM endpoint_state WHERE endpoint = ?"
DISABLED: Final = "SELECT endpoint, disabled_at, reason FROM endpoint_state WHERE disabled_at IS NOT NULL"

# -- call tracking ---------------------------------------------------------------

END_CALL: Final = "DELETE FROM tracked_calls WHERE linkedid = ?"
END_CALL_STATE: Final = "DELETE FROM tracked_call_state WHERE linkedid = ?"
REMOVE_CHANNEL: Final = "DELETE FROM live_channels WHERE uniqueid = ?"
PUT_CALL: Final = "INSERT OR REPLACE INTO tracked_calls VALUES (?, ?, ?, ?, ?)"
PUT_CALL_STATE: Final = "INSERT OR REPLACE INTO tracked_call_state VALUES (?, ?, ?)"
PUT_CHANNEL: Final = "INSERT OR REPLACE INTO live_channels VALUES (?, ?, ?, ?, ?, ?)"
LOAD_CALLS: Final = (
    "SELECT linkedid, caller, exten, source, started_at, client_state, answered_at"
    " FROM tracked_calls LEFT JOIN tracked_call_state USING (linkedid) ORDER BY started_at"
)
LOAD_CHANNELS: Final = "SELECT uniqueid, linkedid, name, state, caller, exten FROM live_channels"

# -- idempotency keys ------------------------------------------------------------

PUT_KEY: Final = "INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?)"
COUNT_KEYS: Final = "SELECT count(*) FROM idempotency_keys"
# The oldest first; ties (same created_at) in key order, so the cut is well defined.
TRIM_KEYS: Final = """
DELETE FROM idempotency_keys WHERE (scope, key) IN
    (SELECT scope, key FROM idempotency_keys ORDER BY created_at, scope, key LIMIT ?)
"""
EXPIRE_KEYS: Final = "DELETE FROM idempotency_keys WHERE scope = ? AND created_at < ?"
GET_KEY: Final = "SELECT fingerprint, result FROM idempotency_keys WHERE scope = ? AND key = ?"
