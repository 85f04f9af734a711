-- The idempotency record of every (scope, key). One row per key; expired rows
-- are invisible to every statement at once and deleted later by the sweeper.

-- Fencing tokens. CACHE 1 (the default) keeps them strictly increasing across
-- every connection and every idemd replica: never raise the cache.
CREATE SEQUENCE idempotency_lease_token_seq AS bigint CACHE 1;

CREATE TABLE idempotency_keys (
  scope             text        NOT NULL,
  key               text        NOT NULL,
  request_hash      bytea       NOT NULL,
  status            text        NOT NULL
                    CHECK (status IN ('in_progress', 'completed', 'failed')),
  response          bytea       NOT NULL DEFAULT ''::bytea,
  response_code     integer     NOT NULL DEFAULT 0,
  response_metadata jsonb       NOT NULL DEFAULT '{}'::jsonb,
  error             text        NOT NULL DEFAULT '',
  retryable         boolean     NOT NULL DEFAULT false,
  lease_token       bigint      NOT NULL,
  attempt           integer     NOT NULL,
  created_at        timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL,
  -- End of the current lease; NULL once completed or failed.
  locked_until      timestamptz,
  expires_at        timestamptz NOT NULL,
  PRIMARY KEY (scope, key),
  CHECK ((status = 'in_progress') = (locked_until IS NOT NULL)),
  CHECK (lease_token > 0 AND attempt > 0)
);

-- The sweeper deletes in expires_at order.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
