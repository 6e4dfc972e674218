-- The PostgreSQL store's tables (salara.store.postgres): the same rows as the SQLite file's
-- (salara.store.schema), with a claim's lease on each delivery in flight.
-- Times are Unix seconds (double precision); bodies are bytes.

CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    call_key text NOT NULL,
    type text NOT NULL DEFAULT '',
    body bytea NOT NULL,
    compat bytea,
    created_at double precision NOT NULL
);
CREATE INDEX events_created ON events (created_at);

-- status: blocked, ready, sending, delivered, dead (salara.store.interface).
-- claimed_by and lease_until: the node whose worker holds a delivery in flight, and until when;
-- after lease_until another node may claim it again.
CREATE TABLE deliveries (
    seq bigint NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    endpoint text NOT NULL,
    call_key text NOT NULL,
    status text NOT NULL CHECK (status IN ('blocked', 'ready', 'sending', 'delivered', 'dead')),
    compat boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL,
    next_attempt_at double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    done_at double precision,
    last_status integer,
    last_error text,
    claimed_by text,
    lease_until double precision,
    PRIMARY KEY (seq, endpoint)
);
CREATE INDEX deliveries_due ON deliveries (endpoint, status, next_attempt_at);
CREATE INDEX deliveries_call ON deliveries (endpoint, call_key, status);
CREATE INDEX deliveries_lease ON deliveries (endpoint, lease_until) WHERE status = 'sending';

CREATE TABLE attempts (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint text NOT NULL DEFAULT 'default',
    event_id text NOT NULL,
    at double precision NOT NULL,
    outcome text NOT NULL,
    http_status integer,
    error text,
    latency_ms double precision,
    answer text
);
CREATE INDEX attempts_at ON attempts (at);
CREATE INDEX attempts_event ON attempts (event_id);

CREATE TABLE endpoint_state (
    endpoint text PRIMARY KEY,
    disabled_at double precision,
    reason text
);

CREATE TABLE tracked_calls (
    linkedid text PRIMARY KEY,
    caller text NOT NULL,
    exten text NOT NULL,
    source text NOT NULL,
    started_at double precision NOT NULL,
    client_state text,
    answered_at double precision
);

CREATE TABLE live_channels (
    uniqueid text PRIMARY KEY,
    linkedid text NOT NULL,
    name text NOT NULL,
    state integer NOT NULL,
    caller text NOT NULL,
    exten text NOT NULL
);

CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    created_at double precision NOT NULL,
    result bytea NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_at ON idempotency_keys (created_at);
