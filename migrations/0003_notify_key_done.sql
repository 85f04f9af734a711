-- Wakes Begin calls that wait on a key (BeginRequest.wait), in every idemd:
-- each idemd LISTENs on channel idem_key_done with one connection. The
-- payload is scope || E'\n' || key (neither can hold a newline). It fires
-- when a lease ends early: the key completes or fails, or its lease is cut
-- short (an operator's release). NOTIFY is sent at commit, never before.
CREATE FUNCTION idem_notify_key_done() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('idem_key_done', NEW.scope || E'\n' || NEW.key);
  RETURN NULL;
END
$$;

CREATE TRIGGER idempotency_keys_notify_done
  AFTER UPDATE ON idempotency_keys
  FOR EACH ROW
  WHEN ((OLD.status = 'in_progress' AND NEW.status <> 'in_progress')
        OR NEW.locked_until < OLD.locked_until)
  EXECUTE FUNCTION idem_notify_key_done();
