/* audit.h — checking a ledger without trusting the switch that wrote it (DESIGN §3, issue 6).
 *
 * Three parts:
 *   - keys: the Ed25519 key pair of signed checkpoints (OpenSSL), made by `tuma audit keygen`,
 *     used by the writer (ledger_checkpoint through ledger_audit_key_sign_cb) and by auditors;
 *   - sources: the journal records of a data directory (LMDB opened read-only, one read
 *     transaction for the whole audit, so journal and accounts are one consistent snapshot and
 *     a running tumad is never blocked) or of a `raw` export file (JOURNAL.md);
 *   - the audit: checks the hash chain from genesis, every checkpoint's signature, and replays
 *     every record into a scratch ledger in memory (accounts in a hash table, pending transfers
 *     by id, an expiry heap), applying the effects of the successful events and checking that
 *     each of them could have happened (accounts exist, limits, pending state, expiries due and
 *     in order). Attached to a data directory (ledger_audit_attach), it also compares every
 *     stored transfer row and balance-history row with the one the replay makes, as it goes;
 *     ledger_audit_finish() then compares every stored account and pending-transfer row with
 *     the scratch ones byte for byte and checks Σ debits = Σ credits.
 *
 * Of the failed events the replay checks the refusals that depend on the state, outside linked
 * chains (not found, closed, exceeds credits/debits, pending posted/voided/expired); the others
 * change no state and are not re-derived: the hash chain and the checkpoints protect them.
 * Threads: an audit and a source belong to one thread at a time; ledger_audit_verify() itself
 * hashes records, and compares stored transfer rows, on a second thread.
 */
#ifndef TUMA_LEDGER_AUDIT_H
#define TUMA_LEDGER_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

/* ---------------------------------------------------------------- keys */

typedef struct ledger_audit_key ledger_audit_key;

/* Makes a fresh Ed25519 key pair: the private key as PEM (PKCS#8) in priv_path, created with
 * mode 0600 and never overwritten (LEDGER_E_INVAL if it exists), and the public key as PEM in
 * pub_path. err[errlen] gets a one-line reason on failure. */
int ledger_audit_keygen(const char *priv_path, const char *pub_path, char *err, size_t errlen);

/* Loads an Ed25519 key from a PEM file: private (for signing) when want_private, else public
 * (a private key file is accepted too and its public half used). *out is owned by the caller
 * (ledger_audit_key_free). Errors: LEDGER_E_INVAL (not an Ed25519 key of that kind; err says
 * why), LEDGER_E_IO (cannot read), LEDGER_E_NOMEM. */
int ledger_audit_key_load(const char *path, int want_private, ledger_audit_key **out, char *err,
                          size_t errlen);
void ledger_audit_key_free(ledger_audit_key *k);

/* The key's fingerprint: SHA-256 of its raw 32-byte public key; borrowed from k. */
const uint8_t *ledger_audit_key_fingerprint(const ledger_audit_key *k);

/* A ledger_sign_cb; arg is a private ledger_audit_key. */
int ledger_audit_key_sign_cb(const uint8_t *msg, size_t len, uint8_t sig[64], void *arg);

/* ---------------------------------------------------------------- sources */

typedef struct ledger_audit_source ledger_audit_source;

/* Opens path: a tumad data directory (with ledger/data.mdb), a ledger directory (with
 * data.mdb), or a raw export file. A directory is opened read-only and one read transaction
 * begins at once: everything read through the source is that snapshot. err[errlen] gets a
 * one-line reason on failure. Errors: LEDGER_E_NOTFOUND, LEDGER_E_IO, LEDGER_E_VERSION,
 * LEDGER_E_NOMEM, LEDGER_E_LMDB. */
int ledger_audit_source_open(const char *path, ledger_audit_source **out, char *err, size_t errlen);

/* Ends the snapshot and closes; accepts NULL. */
void ledger_audit_source_close(ledger_audit_source *s);

/* 1 for a data directory (stored accounts to compare), 0 for an export file. */
int ledger_audit_source_is_dir(const ledger_audit_source *s);

/* Calls cb(seq, record, len, arg) for each record with from_seq ≤ seq (to_seq = 0: to the end)
 * in order; record bytes are borrowed for the call. seq is the LMDB key for a directory, the
 * record's own seq field for a file. A file that ends inside a record (or holds a length that
 * cannot be) gives one last call with the bytes that remain (they will not parse). A non-zero
 * return from cb stops the scan and is returned. Cost: one pass over the records, no copy. */
int ledger_audit_source_scan(ledger_audit_source *s, uint64_t from_seq, uint64_t to_seq,
                             ledger_journal_cb cb, void *arg);

/* The same scan over a raw export held in memory, buf[0 .. len) (borrowed): what the file
 * source does on its mapping. For callers that have the bytes already, and for the fuzzer. */
int ledger_audit_scan_buffer(const void *buf, size_t len, uint64_t from_seq, uint64_t to_seq,
                             ledger_journal_cb cb, void *arg);

/* ---------------------------------------------------------------- backups */

/* Hot backup of the LMDB environment in directory env_dir (a ledger, or any LMDB environment
 * such as tumad's registry) into directory dest_dir, which is created (mode 0750) and must not
 * already hold a data.mdb. One read transaction: the copy is a consistent snapshot, and a
 * running writer is never blocked (mdb_env_copy2). compact: MDB_CP_COMPACT (free pages
 * omitted, pages renumbered; slower). err[errlen] gets a one-line reason on failure. Errors:
 * LEDGER_E_NOTFOUND (no data.mdb), LEDGER_E_INVAL (dest holds one), LEDGER_E_IO, LEDGER_E_LMDB. */
int ledger_audit_backup(const char *env_dir, const char *dest_dir, int compact, char *err,
                        size_t errlen);

/* ---------------------------------------------------------------- the audit */

/* What went wrong first. */
typedef enum ledger_audit_problem {
  LEDGER_AUDIT_OK = 0,
  LEDGER_AUDIT_BAD_RECORD,         /* framing: magic, counts and length disagree, truncated */
  LEDGER_AUDIT_HASH_MISMATCH,      /* the record's hash is not SHA-256 of its bytes */
  LEDGER_AUDIT_GAP,                /* records missing: seq jumps ahead */
  LEDGER_AUDIT_REORDERED,          /* seq goes back or repeats, or timestamps do not increase */
  LEDGER_AUDIT_BROKEN_LINK,        /* prev_hash is not the previous record's hash */
  LEDGER_AUDIT_REPLAY,             /* a recorded effect could not have happened */
  LEDGER_AUDIT_BAD_SIGNATURE,      /* a checkpoint's signature or key does not verify */
  LEDGER_AUDIT_CHECKPOINT_MISSING, /* the kept checkpoint is not in the journal */
  LEDGER_AUDIT_UNSIGNED_TAIL,      /* records after the last checkpoint (when required) */
  LEDGER_AUDIT_BALANCE_MISMATCH,   /* a stored account differs from the replayed one */
  LEDGER_AUDIT_ACCOUNT_MISSING,    /* replayed account not stored, or stored not replayed */
  LEDGER_AUDIT_INVARIANT,          /* Σ debits ≠ Σ credits */
  LEDGER_AUDIT_STORAGE,            /* the stored rows cannot be read */
  LEDGER_AUDIT_TRANSFER_MISMATCH,  /* a stored transfer, pending or history row differs */
} ledger_audit_problem;

/* A static name ("hash mismatch"); never NULL. */
const char *ledger_audit_problem_name(ledger_audit_problem p);

typedef struct ledger_audit_options {
  const ledger_audit_key *pubkey; /* check every checkpoint with it; NULL = count them only */
  const void *kept_checkpoint;    /* a checkpoint record the auditor kept, or NULL (borrowed) */
  size_t kept_checkpoint_len;
  int require_signed_head; /* fail if records follow the last checkpoint (a stopped switch) */
  int chain_only;          /* check the chain and checkpoints, do not replay */
  int require_genesis;     /* the first record must be record 1 (else an export may start later;
                            * ledger_audit_verify sets it for a data directory) */
  uint64_t stop_seq;       /* replay up to this record inclusive (0 = all) */
  uint64_t stop_time;      /* replay the records with timestamp ≤ this, ns (0 = all) */
} ledger_audit_options;

typedef struct ledger_audit_report {
  uint64_t records, batches, checkpoints, events, expiries, accounts, open_pendings;
  uint64_t first_seq;    /* of the first record fed (1 from genesis) */
  uint64_t head_seq;     /* the last record checked */
  uint8_t head_hash[32]; /* its hash */
  uint64_t head_timestamp;
  uint64_t last_checkpoint_seq; /* 0 if none */
  uint64_t unsigned_tail;       /* records after the last checkpoint */
  int checkpoints_verified;     /* 1 if a public key checked them */
  int replayed;                 /* 0 for chain-only audits (and exports not from genesis) */
  int compared;                 /* stored accounts were compared */
  ledger_audit_problem problem;
  uint64_t bad_seq;      /* the first bad record (0 if not tied to one) */
  ledger_id bad_account; /* for balance problems */
  char detail[256];      /* one line saying what is wrong */
} ledger_audit_report;

typedef struct ledger_audit ledger_audit;

/* A fresh scratch ledger; o may be NULL (defaults: chain and replay, no key). o and what it
 * points to are borrowed until ledger_audit_free(). */
int ledger_audit_new(const ledger_audit_options *o, ledger_audit **out);
void ledger_audit_free(ledger_audit *a);

/* Also compare, as the records are fed, every stored transfer row (and history row) with the
 * one the replay makes, and at ledger_audit_finish() every pending-transfer row: src must be a
 * directory source, kept open until ledger_audit_finish(). Call before the first record.
 * LEDGER_E_INVAL for an export file; 0 otherwise. Cost: one cursor step per transfer. */
int ledger_audit_attach(ledger_audit *a, ledger_audit_source *src);

/* A ledger_journal_cb feeding one record to the audit (arg = the audit). Returns 0 to go on,
 * LEDGER_E_CORRUPT at the first problem (in the report), 1 once past stop_seq/stop_time. */
int ledger_audit_feed_cb(uint64_t seq, const void *record, size_t len, void *arg);

/* After the last record: the kept checkpoint, the unsigned tail, the invariant, and with a
 * directory source (may be NULL) every stored account against the replayed one. Returns 0 or
 * LEDGER_E_CORRUPT (see the report). Cost: O(accounts). */
int ledger_audit_finish(ledger_audit *a, ledger_audit_source *src);

/* The report so far; borrowed from a. */
const ledger_audit_report *ledger_audit_report_of(const ledger_audit *a);

/* Calls cb for each replayed account in creation order, with its state after the last record
 * fed (borrowed for the call). A non-zero return stops and is returned. */
typedef int (*ledger_audit_account_cb)(const ledger_account *acc, void *arg);
int ledger_audit_accounts(const ledger_audit *a, ledger_audit_account_cb cb, void *arg);

/* The whole audit of path (see ledger_audit_source_open): open, feed every record, finish.
 * *report is filled in every case; *seconds (may be NULL) gets the wall time of the scan and
 * comparison. Returns 0 if everything holds, LEDGER_E_CORRUPT if not (report says what and
 * where), another ledger_error if path cannot be read (err says why). */
int ledger_audit_verify(const char *path, const ledger_audit_options *o,
                        ledger_audit_report *report, double *seconds, char *err, size_t errlen);

#endif
