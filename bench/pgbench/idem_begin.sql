WITH requested AS (
  SELECT *
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
              $6::text[])
    AS i(scope, key, hash_hex, lease_us, retention_us, owner)),
settled AS (
  SELECT k.scope, k.key
  FROM idempotency_keys k JOIN requested r ON k.scope = r.scope AND k.key = r.key
  WHERE k.expires_at > now()
    AND (k.status = 'completed' OR (k.status = 'failed' AND NOT k.retryable))),
input AS (
  SELECT r.*, nextval('idempotency_lease_token_seq') AS fresh_token
  FROM requested r
  WHERE NOT EXISTS (SELECT 1 FROM settled s
                    WHERE s.scope = r.scope AND s.key = r.key)),
changed AS (
  INSERT INTO idempotency_keys AS k
    (scope, key, request_hash, status, lease_token, attempt,
     created_at, updated_at, locked_until, expires_at, owner)
  SELECT i.scope, i.key, decode(i.hash_hex, 'hex'), 'in_progress',
         i.fresh_token, 1, now(), now(),
         clock_timestamp() + i.lease_us * interval '1 microsecond',
         GREATEST(now() + i.retention_us * interval '1 microsecond',
                  clock_timestamp() + i.lease_us * interval '1 microsecond'),
         i.owner
  FROM input i
  ORDER BY i.scope, i.key
  ON CONFLICT (scope, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash,
    status = 'in_progress',
    response = ''::bytea,
    response_code = 0,
    response_metadata = '{}'::jsonb,
    error = '',
    retryable = false,
    lease_token = CASE WHEN (EXCLUDED.owner <> '' AND k.owner = EXCLUDED.owner AND k.request_hash = EXCLUDED.request_hash AND k.status = 'in_progress' AND k.locked_until > now() AND k.expires_at > now()) THEN k.lease_token
                       ELSE nextval('idempotency_lease_token_seq') END,
    attempt = CASE WHEN k.expires_at <= now() THEN 1
                   WHEN (EXCLUDED.owner <> '' AND k.owner = EXCLUDED.owner AND k.request_hash = EXCLUDED.request_hash AND k.status = 'in_progress' AND k.locked_until > now() AND k.expires_at > now()) THEN k.attempt
                   ELSE k.attempt + 1 END,
    created_at = CASE WHEN k.expires_at <= now() THEN now() ELSE k.created_at END,
    updated_at = now(),
    locked_until = clock_timestamp() + (SELECT i.lease_us FROM input i WHERE i.scope = k.scope AND i.key = k.key) * interval '1 microsecond',
    expires_at = GREATEST(
        CASE WHEN k.expires_at <= now() THEN EXCLUDED.expires_at
             ELSE k.expires_at END,
        clock_timestamp() + (SELECT i.lease_us FROM input i WHERE i.scope = k.scope AND i.key = k.key) * interval '1 microsecond'),
    owner = EXCLUDED.owner
  WHERE k.expires_at <= now()
     OR (k.request_hash = EXCLUDED.request_hash
         AND ((k.status = 'in_progress' AND k.locked_until <= now())
              OR (k.status = 'failed' AND k.retryable)))
     OR (EXCLUDED.owner <> '' AND k.owner = EXCLUDED.owner AND k.request_hash = EXCLUDED.request_hash AND k.status = 'in_progress' AND k.locked_until > now() AND k.expires_at > now())
  RETURNING k.*)
SELECT true,
  k.scope, k.key, k.request_hash, k.status, k.response, k.response_code,
  jsonb_build_object('response_metadata', k.response_metadata)::text,
  k.error, k.retryable, k.lease_token, k.attempt,
  (extract(epoch FROM k.created_at) * 1000000)::int8,
  (extract(epoch FROM k.updated_at) * 1000000)::int8,
  (extract(epoch FROM k.locked_until) * 1000000)::int8,
  (extract(epoch FROM k.expires_at) * 1000000)::int8,
  (extract(epoch FROM now()) * 1000000)::int8,
  k.owner, k.lease_token < i.fresh_token
FROM changed k JOIN input i ON k.scope = i.scope AND k.key = i.key
UNION ALL
SELECT false,
  k.scope, k.key, k.request_hash, k.status, k.response, k.response_code,
  jsonb_build_object('response_metadata', k.response_metadata)::text,
  k.error, k.retryable, k.lease_token, k.attempt,
  (extract(epoch FROM k.created_at) * 1000000)::int8,
  (extract(epoch FROM k.updated_at) * 1000000)::int8,
  (extract(epoch FROM k.locked_until) * 1000000)::int8,
  (extract(epoch FROM k.expires_at) * 1000000)::int8,
  (extract(epoch FROM now()) * 1000000)::int8,
  k.owner, false
FROM idempotency_keys k JOIN requested i ON k.scope = i.scope AND k.key = i.key
WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c.scope = k.scope AND c.key = k.key)
