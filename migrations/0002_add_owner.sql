-- BeginRequest.owner: the caller-chosen id of the invocation that holds (or
-- last held) the lease. A Begin from the same owner re-enters its own lease.
ALTER TABLE idempotency_keys ADD COLUMN owner text NOT NULL DEFAULT '';
