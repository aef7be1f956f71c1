#!/usr/bin/env python3
"""verify_journal.py — checks the hash chain of a Tuma journal export, independently of Tuma.

Written from ledger/JOURNAL.md alone, with Python's standard library only, to show that the
format is documented well enough for anyone to check a journal:

    tuma audit export DATA_DIR --format raw --output journal.raw
    python3 ledger/tools/verify_journal.py journal.raw

A raw export is a sequence of records, each preceded by its length (u32 little endian). Every
record's framing, its SHA-256 hash, its sequence number (one more than the previous one) and
its prev_hash (the previous record's hash; 32 zero bytes before record 1) are checked, and
timestamps must increase. Checkpoint signatures (Ed25519) are not checked here: the standard
library has no Ed25519; `tuma audit verify --pubkey` checks them.

Exit status: 0 the chain holds, 1 it does not (the first bad record is named), 2 usage or I/O.
"""
import hashlib
import struct
import sys

BATCH_MAGIC = b"TUMAJRN1"
CHECKPOINT_MAGIC = b"TUMACKP1"
BATCH_MAX = 8190
CHECKPOINT_SIZE = 184


def record_size(events, expired):
    return 96 + 16 * expired + 132 * events


def check(data):
    """Returns (records, head_seq, head_hash) or raises ValueError('record N: ...')."""
    off = 0
    expect = None
    prev_hash = None
    last_ts = None
    records = 0
    while off < len(data):
        label = "record %d" % expect if expect is not None else "the first record"
        if len(data) - off < 4:
            raise ValueError("%s: the file ends inside a length" % label)
        (length,) = struct.unpack_from("<I", data, off)
        off += 4
        if length > len(data) - off:
            raise ValueError("%s: the file ends inside the record (truncated)" % label)
        rec = data[off:off + length]
        off += length
        if length < 96:
            raise ValueError("%s: %d bytes is too short for a record" % (label, length))
        magic = rec[32:40]
        seq, timestamp = struct.unpack_from("<QQ", rec, 40)
        if expect is None:
            expect = seq
            prev_hash = rec[0:32] if seq != 1 else bytes(32)
            label = "record %d" % expect
        if magic == BATCH_MAGIC:
            events, expired = struct.unpack_from("<II", rec, 56)
            if events > BATCH_MAX or expired > BATCH_MAX or length != record_size(events, expired):
                raise ValueError("%s: counts and length disagree" % label)
            if events == 0 and expired == 0:
                raise ValueError("%s: an empty batch is never recorded" % label)
            last = timestamp + expired + events - 1
        elif magic == CHECKPOINT_MAGIC:
            if length != CHECKPOINT_SIZE:
                raise ValueError("%s: a checkpoint is %d bytes" % (label, CHECKPOINT_SIZE))
            last = timestamp
        else:
            raise ValueError("%s: bad magic %r" % (label, magic))
        if hashlib.sha256(rec[:-32]).digest() != rec[-32:]:
            raise ValueError("%s: hash does not match its bytes" % label)
        if seq != expect:
            raise ValueError("%s: carries seq %d (missing or reordered)" % (label, seq))
        if rec[0:32] != prev_hash:
            raise ValueError("%s: prev_hash is not the hash of record %d" % (label, seq - 1))
        if last_ts is not None and timestamp <= last_ts:
            raise ValueError("%s: timestamp does not increase" % label)
        last_ts = last
        prev_hash = rec[-32:]
        expect = seq + 1
        records += 1
    return records, (expect - 1 if expect else 0), (prev_hash or bytes(32))


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print("usage: verify_journal.py EXPORT.raw", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            data = f.read()
    except OSError as e:
        print("verify_journal.py: %s" % e, file=sys.stderr)
        return 2
    try:
        records, head, head_hash = check(data)
    except ValueError as e:
        print("verify_journal.py: FAILED: %s" % e)
        return 1
    print("records %d, chain head seq %d hash %s: OK" % (records, head, head_hash.hex()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
