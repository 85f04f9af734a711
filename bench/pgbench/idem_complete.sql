WITH changed AS (UPDATE idempotency_keys k SET status = 'completed', response = $4, response_code = $5, response_metadata = COALESCE($6::jsonb -> 'response_metadata', '{}'::jsonb), error = '', retryable = false, locked_until = NULL, updated_at = now() WHERE k.scope = $1 AND k.key = $2 AND k.lease_token = $3 AND k.status = 'in_progress' AND k.expires_at > now() RETURNING k.*)
SELECT true,
  k.scope, k.key, k.request_hash, k.status, k.response, k.response_code,
  jsonb_build_object('response_metadata', k.response_metadata)::text,
  k.error, k.retryable, k.lease_token, k.attempt,
  (extract(epoch FROM k.created_at) * 1000000)::int8,
  (extract(epoch FROM k.updated_at) * 1000000)::int8,
  (extract(epoch FROM k.locked_until) * 1000000)::int8,
  (extract(epoch FROM k.expires_at) * 1000000)::int8,
  (extract(epoch FROM now()) * 1000000)::int8,
  k.owner FROM changed k
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
  k.owner FROM idempotency_keys k
WHERE k.scope = $1 AND k.key = $2 AND k.expires_at > now() AND NOT EXISTS (SELECT 1 FROM changed)
