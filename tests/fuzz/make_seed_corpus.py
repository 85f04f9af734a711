#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus (tests/fuzz/corpus/): a few valid
operation sequences in idem_service_fuzzer.cc's input format,
[selector][length, 2 bytes LE][request protobuf bytes]. Run it again after
changing the format; the files are checked in."""
import os
import struct
import sys

BEGIN, BATCH, COMPLETE, FAIL, GET, EXTEND, CLOCK = range(7)


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def duration(seconds, nanos=0):
    return field(1, seconds) + (field(2, nanos) if nanos else b"")


def begin(scope="svc", key="k1", hash_=b"h" * 32, lease=None, retention=None,
          wait=None, owner=""):
    m = field(1, scope) + field(2, key) + field(3, hash_)
    if lease is not None:
        m += field(4, duration(*lease))
    if retention is not None:
        m += field(5, duration(*retention))
    if wait is not None:
        m += field(6, duration(*wait))
    if owner:
        m += field(7, owner)
    return m


def op(selector, payload):
    return bytes([selector]) + struct.pack("<H", len(payload)) + payload


SEEDS = {
    "begin_complete_replay": op(BEGIN, begin()) + op(COMPLETE, field(1, "svc") + field(2, "k1") + field(3, 1) + field(4, b"ok") + field(5, 201) + field(6, field(1, "content-type") + field(2, "text/plain"))) + op(BEGIN, begin()) + op(GET, field(1, "svc") + field(2, "k1")),
    "begin_fail_retryable": op(BEGIN, begin(owner="run-1")) + op(FAIL, field(1, "svc") + field(2, "k1") + field(3, 1) + field(4, "declined") + field(5, 1)) + op(BEGIN, begin()),
    "lease_runs_out": op(BEGIN, begin(lease=(1,))) + op(CLOCK, b"\x02") + op(BEGIN, begin()) + op(EXTEND, field(1, "svc") + field(2, "k1") + field(3, 2) + field(4, duration(60))),
    "batch": op(BATCH, field(1, begin(key="a")) + field(1, begin(key="b", retention=(3600,)))),
    "mismatch_and_reentry": op(BEGIN, begin(owner="o")) + op(BEGIN, begin(owner="o")) + op(BEGIN, begin(hash_=b"other")),
    "wait": op(BEGIN, begin(wait=(1, 500000000))),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {out}", file=sys.stderr)
