#!/usr/bin/env python3
"""make_journal_corpus.py — writes the seed corpus of fuzz_journal (proto/fuzz/corpus/journal/).

Run once from the repository root; its output is committed. Each seed is one mode byte (see
fuzz_journal.c) followed by a small raw journal export built from ledger/JOURNAL.md: accounts,
plain, pending, posted, voided and expired transfers, a failed event and a checkpoint record
(with a dummy signature).
"""
import hashlib
import os
import struct

T0 = 1700000000000000000


def idb(n):
    return struct.pack("<QQ", n, 0)


def account(n, flags=0):
    return idb(n) + bytes(32) + bytes(16) + struct.pack("<QII", 0, 0, 0) + struct.pack(
        "<IHHQ", 1, 1, flags, 0) + bytes(32)


def transfer(n, debit, credit, amount, flags=0, pending_id=0, timeout=0):
    return (idb(n) + idb(debit) + idb(credit) + struct.pack("<Q", amount) + idb(pending_id) +
            bytes(16) + struct.pack("<QII", 0, 0, timeout) + struct.pack("<IHHQQ", 1, 1, flags, 0, 0))


def batch(prev, seq, ts, events, expired=()):
    body = prev + b"TUMAJRN1" + struct.pack("<QQII", seq, ts, len(events), len(expired))
    body += b"".join(idb(e) for e in expired)
    body += b"".join(e[1] for e in events)
    body += b"".join(struct.pack("<HH", e[0], e[2]) for e in events)
    return body + hashlib.sha256(body).digest()


def checkpoint(prev, seq, ts):
    body = prev + b"TUMACKP1" + struct.pack("<QQ", seq, ts) + bytes(32) + bytes(64)
    return body + hashlib.sha256(body).digest()


def export(records):
    return b"".join(struct.pack("<I", len(r)) + r for r in records)


def chain(specs):
    out, prev = [], bytes(32)
    for make in specs:
        rec = make(prev, len(out) + 1)
        out.append(rec)
        prev = rec[-32:]
    return out


A, T = 1, 2
recs = chain([
    lambda p, s: batch(p, s, T0, [(A, account(1), 0), (A, account(2), 0), (A, account(3, 2), 0)]),
    lambda p, s: batch(p, s, T0 + 10, [(T, transfer(10, 1, 2, 500), 0),
                                        (T, transfer(11, 1, 3, 200, flags=2, timeout=1), 0),
                                        (T, transfer(12, 3, 1, 5), 64)]),
    lambda p, s: batch(p, s, T0 + 20, [(T, transfer(13, 0, 0, 0, flags=4, pending_id=11), 0)]),
    lambda p, s: checkpoint(p, s, T0 + 30),
    lambda p, s: batch(p, s, T0 + 40, [(T, transfer(14, 2, 1, 50, flags=2, timeout=1), 0)]),
    lambda p, s: batch(p, s, T0 + 40 + 2 * 10**9, [], expired=[14]),
])

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "journal")
os.makedirs(out, exist_ok=True)
seeds = {
    "full": b"\x00" + export(recs),
    "full-rechain": b"\x01" + export(recs),
    "at-2": b"\x02" + export(recs),
    "tail": b"\x00" + export(recs[3:]),
    "one": b"\x00" + export(recs[:1]),
    "truncated": b"\x00" + export(recs)[:300],
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
