// idem from Node: @grpc/grpc-js and @grpc/proto-loader load
// proto/idem/v1/idempotency.proto at run time and drive idemd. Run by ctest
// (node_client_e2e) with `node --test`; starts its own idemd on the test
// database, like tests/python/e2e_test.py, and covers the same scenarios.
//
// Environment: IDEM_TEST_IDEMD (the idemd binary), IDEM_TEST_PG_DIR (the
// pg_cluster fixture's directory), IDEM_PROTO_ROOT (the proto/ directory),
// NODE_PATH (node_modules installed by the node_deps fixture).
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const net = require('node:net');
const path = require('node:path');
const { describe, it, before, after } = require('node:test');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = process.env.IDEM_PROTO_ROOT ||
  path.join(__dirname, '..', '..', 'proto');

// Field names as in the proto (keepCase). int64 fields (lease_token,
// Duration.seconds) come back as decimal strings: compare them with BigInt.
// bytes come back as Buffer, enums as names.
const packageDefinition = protoLoader.loadSync('idem/v1/idempotency.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const idem = grpc.loadPackageDefinition(packageDefinition).idem.v1;

const sha256 = (text) => crypto.createHash('sha256').update(text).digest();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const durationNanos = (d) => BigInt(d.seconds) * 1000000000n + BigInt(d.nanos);
const timestampNanos = durationNanos;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Resolves with the call's response; rejects with the gRPC error (.code,
// .details).
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 5000 }, (err, response) =>
      (err ? reject(err) : resolve(response)));
  });
}

// Asserts that `promise` rejects with gRPC status `code`, and returns the
// error.
async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err.code, code,
      `expected ${grpc.status[code]}, got ${grpc.status[err.code]}: ${err.details}`);
    return err;
  }
  assert.fail(`expected ${grpc.status[code]}, got OK`);
}

describe('idem from Node (@grpc/grpc-js)', () => {
  let idemd;
  let idemdExit;
  let client;

  before(async () => {
    const pgDir = process.env.IDEM_TEST_PG_DIR;
    const url = `postgresql:///idem_test?host=${pgDir}/socket&user=postgres`;
    const address = `127.0.0.1:${await freePort()}`;
    idemd = spawn(process.env.IDEM_TEST_IDEMD,
      [`--listen=${address}`, `--postgres=${url}`], { stdio: 'inherit' });
    idemdExit = new Promise((resolve) => {
      idemd.on('exit', (code, signal) => resolve({ code, signal }));
      idemd.on('error', (err) => resolve({ error: err.message }));
    });
    client = new idem.Idempotency(address, grpc.credentials.createInsecure(), {
      // Retry the connection quickly while idemd starts.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    const ready = new Promise((resolve) =>
      client.waitForReady(Date.now() + 15000, (err) => resolve(err || 'ready')));
    const started = await Promise.race([ready, idemdExit]);
    if (started !== 'ready') {
      const why = started instanceof Error ? started.message : JSON.stringify(started);
      throw new Error(`idemd did not become ready: ${why}`);
    }
  });

  after(() => {
    if (client) client.close();
    if (idemd && idemd.exitCode === null && idemd.signalCode === null) {
      idemd.kill('SIGKILL');
    }
  });

  const newScope = () => `test/node/${crypto.randomUUID().replace(/-/g, '')}`;
  const begin = (scope, key, { body = 'charge 10 EUR', leaseSeconds } = {}) =>
    call(client, 'Begin', {
      scope,
      key,
      request_hash: sha256(body),
      lease_ttl: leaseSeconds ? { seconds: leaseSeconds } : null,
    });

  it('Begin -> Complete -> replay byte for byte', async () => {
    const scope = newScope();
    const response = Buffer.from('{"id": "ch_1"}\x00', 'latin1');
    const first = await begin(scope, 'order-1');
    assert.equal(first.outcome, 'ACQUIRED');
    assert.ok(BigInt(first.lease_token) > 0n);
    const done = await call(client, 'Complete', {
      scope,
      key: 'order-1',
      lease_token: first.lease_token,
      response,
      response_code: 201,
      response_metadata: { 'content-type': 'application/json' },
    });
    assert.equal(done.record.status, 'COMPLETED');

    const replay = await begin(scope, 'order-1');
    assert.equal(replay.outcome, 'COMPLETED');
    assert.equal(replay.lease_token, '0');
    assert.ok(Buffer.isBuffer(replay.record.response));
    assert.ok(replay.record.response.equals(response));
    assert.equal(replay.record.response_code, 201);
    assert.deepEqual({ ...replay.record.response_metadata },
      { 'content-type': 'application/json' });

    const got = await call(client, 'Get', { scope, key: 'order-1' });
    assert.ok(got.record.response.equals(response));
  });

  it('a different request on the same key is FAILED_PRECONDITION', async () => {
    const scope = newScope();
    await begin(scope, 'order-2');
    const err = await rejectsWith(begin(scope, 'order-2', { body: 'charge 99 EUR' }),
      grpc.status.FAILED_PRECONDITION);
    assert.match(err.details, /does not match/);
  });

  it('IN_PROGRESS, then lease takeover fences the old token', async () => {
    const scope = newScope();
    const first = await begin(scope, 'order-3', { leaseSeconds: 1 });
    assert.equal(first.outcome, 'ACQUIRED');
    const busy = await begin(scope, 'order-3');
    assert.equal(busy.outcome, 'IN_PROGRESS');
    assert.ok(durationNanos(busy.retry_after) > 0n);
    await sleep(1200);
    const second = await begin(scope, 'order-3');
    assert.equal(second.outcome, 'ACQUIRED');
    assert.equal(second.record.attempt, 2);
    assert.ok(BigInt(second.lease_token) > BigInt(first.lease_token));
    await rejectsWith(call(client, 'Complete', {
      scope, key: 'order-3', lease_token: first.lease_token,
    }), grpc.status.ABORTED);
  });

  it('ExtendLease keeps the key IN_PROGRESS for others', async () => {
    const scope = newScope();
    const first = await begin(scope, 'order-4', { leaseSeconds: 1 });
    assert.equal(first.outcome, 'ACQUIRED');
    const extended = await call(client, 'ExtendLease', {
      scope, key: 'order-4', lease_token: first.lease_token, lease_ttl: { seconds: 60 },
    });
    assert.ok(timestampNanos(extended.record.locked_until) -
              timestampNanos(first.record.locked_until) > 30n * 1000000000n);
    const busy = await begin(scope, 'order-4');
    assert.equal(busy.outcome, 'IN_PROGRESS');
    assert.ok(durationNanos(busy.retry_after) > 30n * 1000000000n);
    await rejectsWith(call(client, 'ExtendLease', {
      scope, key: 'order-4', lease_token: String(BigInt(first.lease_token) + 1n),
    }), grpc.status.ABORTED);
  });

  it('Fail(retryable) frees the key; Fail(permanent) is replayed', async () => {
    const scope = newScope();
    const first = await begin(scope, 'order-5');
    const failed = await call(client, 'Fail', {
      scope, key: 'order-5', lease_token: first.lease_token,
      error: 'card network timeout', retryable: true,
    });
    assert.equal(failed.record.status, 'FAILED');
    assert.equal(failed.record.retryable, true);
    const second = await begin(scope, 'order-5');
    assert.equal(second.outcome, 'ACQUIRED');
    assert.equal(second.record.attempt, 2);
    assert.ok(BigInt(second.lease_token) > BigInt(first.lease_token));

    await call(client, 'Fail', {
      scope, key: 'order-5', lease_token: second.lease_token,
      error: 'card declined', retryable: false,
      response: Buffer.from('declined\x00', 'latin1'), response_code: 402,
    });
    const replay = await begin(scope, 'order-5');
    assert.equal(replay.outcome, 'FAILED');
    assert.equal(replay.lease_token, '0');
    assert.equal(replay.record.error, 'card declined');
    assert.ok(replay.record.response.equals(Buffer.from('declined\x00', 'latin1')));
    assert.equal(replay.record.response_code, 402);
    assert.equal(replay.record.retryable, false);
  });

  it('an unknown key is NOT_FOUND', async () => {
    await rejectsWith(call(client, 'Get', { scope: newScope(), key: 'nobody' }),
      grpc.status.NOT_FOUND);
  });

  it('a bad scope is INVALID_ARGUMENT naming "scope"', async () => {
    const err = await rejectsWith(call(client, 'Begin', {
      scope: 'no spaces allowed', key: 'k', request_hash: Buffer.from('h'),
    }), grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /scope/);
  });

  it('idemd exits with code 0 on SIGTERM', async () => {
    client.close();
    client = null;
    idemd.kill('SIGTERM');
    let timer;
    const exit = await Promise.race([
      idemdExit,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve({ code: 'none within 15 s' }), 15000);
      }),
    ]);
    clearTimeout(timer);
    assert.deepEqual(exit, { code: 0, signal: null });
  });
});
