/* ledger.h — Tuma's durable double-entry ledger on LMDB.
 *
 * Accounts and transfers after TigerBeetle's model (DESIGN §3): 128-bit client-chosen ids,
 * unsigned 64-bit amounts in minor units, one ledger (currency) per account, two-phase
 * transfers, linked chains, balancing transfers and balance constraints. Every batch of
 * events is applied in one LMDB write transaction, together with one hash-chained journal
 * record (ledger/JOURNAL.md), and committed with a full sync before ledger_apply() returns.
 *
 * Threads: one writer at a time (ledger_apply and ledger_replay_record must not run
 * concurrently; ledger/queue.h gives the writer thread). Queries may run on any thread, at
 * any time, concurrently with the writer: each one uses its own LMDB read transaction.
 */
#ifndef TUMA_LEDGER_H
#define TUMA_LEDGER_H

#include <stddef.h>
#include <stdint.h>

/* A 128-bit id; numerically hi * 2^64 + lo. Zero is never a valid id, nor is all ones. */
typedef struct ledger_id {
  uint64_t lo;
  uint64_t hi;
} ledger_id;

/* Account flags. */
enum {
  LEDGER_ACCOUNT_LINKED = 1u << 0,                         /* chains with the next event */
  LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS = 1u << 1, /* e.g. a prefunded liquidity account */
  LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS = 1u << 2,
  LEDGER_ACCOUNT_HISTORY = 1u << 3, /* keep a balance snapshot per transfer */
  LEDGER_ACCOUNT_CLOSED = 1u << 4,  /* set by the ledger only (closing transfers) */
};

/* Transfer flags. */
enum {
  LEDGER_TRANSFER_LINKED = 1u << 0,
  LEDGER_TRANSFER_PENDING = 1u << 1,
  LEDGER_TRANSFER_POST_PENDING = 1u << 2,
  LEDGER_TRANSFER_VOID_PENDING = 1u << 3,
  LEDGER_TRANSFER_BALANCING_DEBIT = 1u << 4,
  LEDGER_TRANSFER_BALANCING_CREDIT = 1u << 5,
  LEDGER_TRANSFER_CLOSING_DEBIT = 1u << 6,  /* pending only: closes the debit account */
  LEDGER_TRANSFER_CLOSING_CREDIT = 1u << 7, /* pending only: closes the credit account */
};

/* An account: 128 bytes, the same bytes in memory, in the journal and in LMDB (little endian).
 * On creation the balances and the timestamp must be zero; the ledger assigns the timestamp. */
typedef struct ledger_account {
  ledger_id id;
  uint64_t debits_pending;
  uint64_t debits_posted;
  uint64_t credits_pending;
  uint64_t credits_posted;
  ledger_id user_data_128;
  uint64_t user_data_64;
  uint32_t user_data_32;
  uint32_t reserved; /* must be zero */
  uint32_t ledger;   /* currency: ISO 4217 numeric code, or any scheme-chosen non-zero number */
  uint16_t code;     /* kind of account, chosen by the user (liquidity, settlement, …), non-zero */
  uint16_t flags;    /* LEDGER_ACCOUNT_* */
  uint64_t timestamp;
  uint8_t padding[32]; /* must be zero */
} ledger_account;

/* A transfer: 128 bytes, as above. Immutable once created. */
typedef struct ledger_transfer {
  ledger_id id; /* the idempotency key */
  ledger_id debit_account_id;
  ledger_id credit_account_id;
  uint64_t amount;
  ledger_id pending_id; /* for post_pending / void_pending: the pending transfer */
  ledger_id user_data_128;
  uint64_t user_data_64;
  uint32_t user_data_32;
  uint32_t timeout; /* pending only: seconds after its timestamp at which it expires; 0 = never */
  uint32_t ledger;
  uint16_t code;
  uint16_t flags; /* LEDGER_TRANSFER_* */
  uint64_t timestamp;
  uint64_t reserved; /* must be zero */
} ledger_transfer;

typedef enum ledger_event_kind {
  LEDGER_EVENT_CREATE_ACCOUNT = 1,
  LEDGER_EVENT_CREATE_TRANSFER = 2,
} ledger_event_kind;

/* One input of a batch. Events of both kinds may be mixed; a linked chain may span both. */
typedef struct ledger_event {
  uint32_t kind;     /* ledger_event_kind */
  uint32_t reserved; /* ignored, and not journaled */
  union {
    ledger_account account;
    ledger_transfer transfer;
  };
} ledger_event;

/* The result of one event. Exactly one per event; where several apply, the first in this
 * order wins (the numeric value is stable and stored in the journal, the order is the
 * precedence):
 *
 * Both kinds
 *   LEDGER_OK                                   created
 *   LEDGER_LINKED_EVENT_FAILED                  another event of its linked chain failed
 *   LEDGER_LINKED_EVENT_CHAIN_OPEN              the batch ended inside a linked chain
 *   LEDGER_TIMESTAMP_MUST_BE_ZERO
 *   LEDGER_RESERVED_FIELD                       reserved or padding bytes are not zero
 *   LEDGER_RESERVED_FLAG                        an unknown flag, or `closed` on creation
 *   LEDGER_ID_MUST_NOT_BE_ZERO
 *   LEDGER_ID_MUST_NOT_BE_INT_MAX
 *   LEDGER_UNKNOWN_EVENT_KIND
 * Accounts, then
 *   LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE         both balance constraints
 *   LEDGER_DEBITS_PENDING_MUST_BE_ZERO, _DEBITS_POSTED_, _CREDITS_PENDING_, _CREDITS_POSTED_
 *   LEDGER_LEDGER_MUST_NOT_BE_ZERO, LEDGER_CODE_MUST_NOT_BE_ZERO
 *   LEDGER_EXISTS_WITH_DIFFERENT_FLAGS, _USER_DATA_128, _USER_DATA_64, _USER_DATA_32,
 *     _LEDGER, _CODE
 *   LEDGER_EXISTS                               same id, same fields: success for the caller
 * Transfers, then
 *   LEDGER_EXISTS_WITH_DIFFERENT_FLAGS, _PENDING_ID, _TIMEOUT, _DEBIT_ACCOUNT_ID,
 *     _CREDIT_ACCOUNT_ID, _AMOUNT, _USER_DATA_128, _USER_DATA_64, _USER_DATA_32, _LEDGER, _CODE
 *     (for post/void, zero account ids, ledger and code mean "as the pending transfer", and a
 *     zero post amount means "the whole pending amount"; a balancing transfer may have
 *     moved less than it asked for)
 *   LEDGER_EXISTS
 *   LEDGER_ID_ALREADY_FAILED                    this id failed before with a transient result
 *   LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE         two of pending/post/void; balancing or closing
 *                                               with post/void; closing without pending
 *   post_pending / void_pending:
 *     LEDGER_PENDING_ID_MUST_NOT_BE_ZERO, _NOT_BE_INT_MAX, LEDGER_PENDING_ID_MUST_BE_DIFFERENT
 *     LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
 *     LEDGER_PENDING_TRANSFER_NOT_FOUND *, LEDGER_PENDING_TRANSFER_NOT_PENDING
 *     LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID, _CREDIT_ACCOUNT_ID, _LEDGER, _CODE
 *     LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT     post amount above the pending amount
 *     LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT  void amount neither 0 nor the pending one
 *     LEDGER_PENDING_TRANSFER_ALREADY_POSTED, _ALREADY_VOIDED, LEDGER_PENDING_TRANSFER_EXPIRED
 *     LEDGER_OVERFLOWS_DEBITS_POSTED *, LEDGER_OVERFLOWS_CREDITS_POSTED *
 *   other transfers:
 *     LEDGER_PENDING_ID_MUST_BE_ZERO
 *     LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO, _INT_MAX, LEDGER_CREDIT_ACCOUNT_ID_…
 *     LEDGER_ACCOUNTS_MUST_BE_DIFFERENT
 *     LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
 *     LEDGER_AMOUNT_MUST_NOT_BE_ZERO            (balancing transfers may ask for zero)
 *     LEDGER_LEDGER_MUST_NOT_BE_ZERO, LEDGER_CODE_MUST_NOT_BE_ZERO
 *     LEDGER_DEBIT_ACCOUNT_NOT_FOUND *, LEDGER_CREDIT_ACCOUNT_NOT_FOUND *
 *     LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
 *     LEDGER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
 *     LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED *, LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED *
 *     LEDGER_OVERFLOWS_DEBITS_PENDING *, _CREDITS_PENDING *, _DEBITS_POSTED *,
 *       _CREDITS_POSTED *, LEDGER_OVERFLOWS_DEBITS *, LEDGER_OVERFLOWS_CREDITS *
 *     LEDGER_OVERFLOWS_TIMEOUT
 *     LEDGER_EXCEEDS_CREDITS *                  debit account has debits_must_not_exceed_credits
 *     LEDGER_EXCEEDS_DEBITS *                   credit account has credits_must_not_exceed_debits
 * Whole batch (never stored as the outcome of an id; the same event may be sent again):
 *   LEDGER_BATCH_STORAGE_FULL, LEDGER_BATCH_STORAGE_ERROR
 *
 * Results marked * are transient: they depend on state that may change, so the id is
 * remembered as failed and any later event with it gets LEDGER_ID_ALREADY_FAILED. */
typedef enum ledger_result {
  LEDGER_OK = 0,
  LEDGER_LINKED_EVENT_FAILED = 1,
  LEDGER_LINKED_EVENT_CHAIN_OPEN = 2,
  LEDGER_TIMESTAMP_MUST_BE_ZERO = 3,
  LEDGER_RESERVED_FIELD = 4,
  LEDGER_RESERVED_FLAG = 5,
  LEDGER_ID_MUST_NOT_BE_ZERO = 6,
  LEDGER_ID_MUST_NOT_BE_INT_MAX = 7,
  LEDGER_UNKNOWN_EVENT_KIND = 8,
  LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE = 9,
  LEDGER_DEBITS_PENDING_MUST_BE_ZERO = 10,
  LEDGER_DEBITS_POSTED_MUST_BE_ZERO = 11,
  LEDGER_CREDITS_PENDING_MUST_BE_ZERO = 12,
  LEDGER_CREDITS_POSTED_MUST_BE_ZERO = 13,
  LEDGER_LEDGER_MUST_NOT_BE_ZERO = 14,
  LEDGER_CODE_MUST_NOT_BE_ZERO = 15,
  LEDGER_EXISTS_WITH_DIFFERENT_FLAGS = 16,
  LEDGER_EXISTS_WITH_DIFFERENT_PENDING_ID = 17,
  LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT = 18,
  LEDGER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = 19,
  LEDGER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = 20,
  LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT = 21,
  LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128 = 22,
  LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64 = 23,
  LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32 = 24,
  LEDGER_EXISTS_WITH_DIFFERENT_LEDGER = 25,
  LEDGER_EXISTS_WITH_DIFFERENT_CODE = 26,
  LEDGER_EXISTS = 27,
  LEDGER_ID_ALREADY_FAILED = 28,
  LEDGER_PENDING_ID_MUST_NOT_BE_ZERO = 29,
  LEDGER_PENDING_ID_MUST_NOT_BE_INT_MAX = 30,
  LEDGER_PENDING_ID_MUST_BE_DIFFERENT = 31,
  LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 32,
  LEDGER_PENDING_TRANSFER_NOT_FOUND = 33,
  LEDGER_PENDING_TRANSFER_NOT_PENDING = 34,
  LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 35,
  LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 36,
  LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 37,
  LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CODE = 38,
  LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT = 39,
  LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 40,
  LEDGER_PENDING_TRANSFER_ALREADY_POSTED = 41,
  LEDGER_PENDING_TRANSFER_ALREADY_VOIDED = 42,
  LEDGER_PENDING_TRANSFER_EXPIRED = 43,
  LEDGER_PENDING_ID_MUST_BE_ZERO = 44,
  LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 45,
  LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 46,
  LEDGER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 47,
  LEDGER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 48,
  LEDGER_ACCOUNTS_MUST_BE_DIFFERENT = 49,
  LEDGER_AMOUNT_MUST_NOT_BE_ZERO = 50,
  LEDGER_DEBIT_ACCOUNT_NOT_FOUND = 51,
  LEDGER_CREDIT_ACCOUNT_NOT_FOUND = 52,
  LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 53,
  LEDGER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 54,
  LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED = 55,
  LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED = 56,
  LEDGER_OVERFLOWS_DEBITS_PENDING = 57,
  LEDGER_OVERFLOWS_CREDITS_PENDING = 58,
  LEDGER_OVERFLOWS_DEBITS_POSTED = 59,
  LEDGER_OVERFLOWS_CREDITS_POSTED = 60,
  LEDGER_OVERFLOWS_DEBITS = 61,
  LEDGER_OVERFLOWS_CREDITS = 62,
  LEDGER_OVERFLOWS_TIMEOUT = 63,
  LEDGER_EXCEEDS_CREDITS = 64,
  LEDGER_EXCEEDS_DEBITS = 65,
  LEDGER_BATCH_STORAGE_FULL = 66,
  LEDGER_BATCH_STORAGE_ERROR = 67,
  LEDGER_RESULT_COUNT_ = 68
} ledger_result;

/* The symbolic name of a result ("exceeds_credits"); never NULL. */
const char *ledger_result_name(ledger_result r);

/* Whether a result counts as success for the caller (LEDGER_OK or LEDGER_EXISTS). */
int ledger_result_is_success(ledger_result r);

/* Return codes of the functions below (0 = ok). */
typedef enum ledger_error {
  LEDGER_E_OK = 0,
  LEDGER_E_NOMEM = 1,    /* allocation failed */
  LEDGER_E_INVAL = 2,    /* bad argument */
  LEDGER_E_NOTFOUND = 3, /* no such account, transfer or record */
  LEDGER_E_AGAIN = 4,    /* would block: a bounded queue is full */
  LEDGER_E_FULL = 5,     /* the map reached its maximum size, or the disk is full */
  LEDGER_E_IO = 6,       /* the storage failed (write, sync); nothing of the batch committed */
  LEDGER_E_CORRUPT = 7,  /* a stored or replayed journal record does not verify */
  LEDGER_E_VERSION = 8,  /* the data directory is of another format version */
  LEDGER_E_CLOSED = 9,   /* the queue is closing */
  LEDGER_E_LMDB = 10,    /* any other LMDB error */
} ledger_error;

/* A static message for a ledger_error; never NULL. */
const char *ledger_strerror(int err);

typedef struct ledger ledger;

/* The ledger's clock: nanoseconds since the Unix epoch. Tests pass their own. */
typedef uint64_t (*ledger_clock_cb)(void *arg);

enum {
  /* Benchmarks only: commit without fsync. Breaks the durability rule; never in tumad. */
  LEDGER_OPEN_UNSAFE_NOSYNC_BENCH_ONLY = 1u << 0,
  /* Open read-only (auditors; an LMDB environment another process may be writing). */
  LEDGER_OPEN_READ_ONLY = 1u << 1,
};

typedef struct ledger_options {
  size_t map_size;     /* initial LMDB map size in bytes; 0 = 64 MiB */
  size_t map_size_max; /* the map grows by doubling up to this; 0 = 1 TiB */
  unsigned flags;      /* LEDGER_OPEN_* */
  ledger_clock_cb clock; /* NULL = CLOCK_REALTIME */
  void *clock_arg;
} ledger_options;

/* Opens (creating if needed) the ledger in directory `dir`, which is created if missing.
 * `opts` may be NULL for the defaults. On success *out owns the environment; close it with
 * ledger_close(). Errors: LEDGER_E_INVAL, _NOMEM, _VERSION, _CORRUPT (journal head unreadable),
 * _LMDB, _IO. */
int ledger_open(const char *dir, const ledger_options *opts, ledger **out);

/* Closes the ledger; accepts NULL. No apply or query may be running. */
void ledger_close(ledger *l);

/* Applies n events (0 ≤ n ≤ LEDGER_BATCH_MAX) in one durable write transaction: first the
 * pending transfers whose timeout has passed are expired (voided by the ledger), then each
 * event in order, then one journal record is appended; then commit and sync. results[i] is
 * the result of events[i]. Returns 0 once everything is durable.
 *
 * On LEDGER_E_FULL or LEDGER_E_IO nothing of the batch is committed, every result is
 * LEDGER_BATCH_STORAGE_FULL / _ERROR, and the ledger stays usable (the map grows first when
 * it can). Cost: O(n log N) B-tree work plus one sync. Events and results are borrowed. */
int ledger_apply(ledger *l, const ledger_event *events, ledger_result *results, size_t n);

#define LEDGER_BATCH_MAX 8190

/* The state of a pending transfer. */
typedef enum ledger_pending_state {
  LEDGER_PENDING_NONE = 0, /* not a pending transfer */
  LEDGER_PENDING_OPEN = 1,
  LEDGER_PENDING_POSTED = 2,
  LEDGER_PENDING_VOIDED = 3,
  LEDGER_PENDING_EXPIRED = 4,
} ledger_pending_state;

/* Looks up an account / a transfer by id into *out. LEDGER_E_NOTFOUND if there is none. */
int ledger_lookup_account(ledger *l, ledger_id id, ledger_account *out);
int ledger_lookup_transfer(ledger *l, ledger_id id, ledger_transfer *out);

/* The state of pending transfer `id` (LEDGER_PENDING_NONE for a transfer that is not pending);
 * *resolved_ts (may be NULL) gets the timestamp of the post/void/expiry, or 0. */
int ledger_pending_state_of(ledger *l, ledger_id id, ledger_pending_state *state,
                            uint64_t *resolved_ts);

enum {
  LEDGER_FILTER_DEBITS = 1u << 0,   /* transfers where the account is debited */
  LEDGER_FILTER_CREDITS = 1u << 1,  /* transfers where the account is credited */
  LEDGER_FILTER_REVERSED = 1u << 2, /* newest first */
};

/* Which of an account's transfers a query wants. */
typedef struct ledger_account_filter {
  ledger_id account_id;
  uint64_t timestamp_min; /* inclusive; 0 = no bound */
  uint64_t timestamp_max; /* inclusive; 0 = no bound */
  uint32_t limit;         /* at most this many results, > 0 */
  uint32_t flags;         /* LEDGER_FILTER_*; neither DEBITS nor CREDITS means both */
} ledger_account_filter;

/* An account's balances right after one of its transfers. */
typedef struct ledger_balance {
  uint64_t debits_pending;
  uint64_t debits_posted;
  uint64_t credits_pending;
  uint64_t credits_posted;
  uint64_t timestamp; /* the transfer's */
} ledger_balance;

/* The account's transfers matching f, oldest first (newest first with REVERSED), into
 * out[0..cap), *n set to the count. Cost: O(transfers of the account newer than
 * timestamp_min); newest-first queries with a limit stop early. LEDGER_E_NOTFOUND if the
 * account does not exist; LEDGER_E_INVAL if limit is 0. */
int ledger_account_transfers(ledger *l, const ledger_account_filter *f, ledger_transfer *out,
                             size_t cap, size_t *n);

/* The account's balance after each of its transfers matching f (accounts with the history
 * flag only; otherwise *n = 0). Same order and cost as ledger_account_transfers(). Expiries
 * change balances without a transfer and have no entry here. */
int ledger_account_balances(ledger *l, const ledger_account_filter *f, ledger_balance *out,
                            size_t cap, size_t *n);

/* Calls cb for each open pending transfer that has a timeout, in order of expiry, in one read
 * transaction (pending transfers without a timeout are not listed); the transfer is borrowed
 * for the call. A non-zero return from cb stops the scan and is returned. O(open pendings). */
typedef int (*ledger_pending_cb)(const ledger_transfer *t, uint64_t expires_at, void *arg);
int ledger_scan_expiring(ledger *l, ledger_pending_cb cb, void *arg);

/* Sums over all accounts, for the invariant checks of tests and audits. */
typedef struct ledger_totals {
  uint64_t accounts;
  unsigned __int128 debits_pending, debits_posted, credits_pending, credits_posted;
} ledger_totals;

/* Scans every account (O(accounts)) in one read transaction. */
int ledger_totals_of(ledger *l, ledger_totals *out);

/* The ledger's clock now (ledger_options.clock, or CLOCK_REALTIME), in nanoseconds. Expiry is
 * due when this reaches ledger_next_expiry(); it is not a timestamp the ledger assigned. */
uint64_t ledger_time(const ledger *l);

/* Nanosecond timestamp of the earliest pending expiry, or 0 if none is scheduled. */
int ledger_next_expiry(ledger *l, uint64_t *expires_at);

/* The journal head: the sequence number of the last record (0 if none) and its hash (all
 * zeros if none). */
int ledger_journal_head(ledger *l, uint64_t *seq, uint8_t hash[32]);

/* Calls cb for each stored journal record with seq ≥ from_seq, in order, in one read
 * transaction; the record bytes are borrowed for the duration of the call only. A non-zero
 * return from cb stops the scan and is returned. */
typedef int (*ledger_journal_cb)(uint64_t seq, const void *record, size_t len, void *arg);
int ledger_journal_scan(ledger *l, uint64_t from_seq, ledger_journal_cb cb, void *arg);

/* Re-reads the stored journal from the first record and checks every record's framing, hash
 * and link to its predecessor (one read transaction, O(journal bytes)). Returns 0, or
 * LEDGER_E_CORRUPT with *bad_seq (may be NULL) set to the first record that fails. */
int ledger_journal_verify(ledger *l, uint64_t *bad_seq);

/* Applies one journal record taken from another ledger's journal, as its writer did: checks
 * that its sequence number and prev_hash follow this ledger's head and that its hash holds,
 * applies its events at its own timestamp, and checks that the results and expiries are the
 * ones recorded. A checkpoint record is appended as it is (its signature is not checked here). On success this ledger's new head equals the record's. LEDGER_E_CORRUPT if
 * anything differs (nothing is committed then). The record is borrowed. */
int ledger_replay_record(ledger *l, const void *record, size_t len);

/* Signs msg[0 .. len) into sig (an Ed25519 signature, 64 bytes); returns 0, or non-zero if it
 * could not. ledger/audit.h gives one (ledger_audit_key_sign_cb). */
typedef int (*ledger_sign_cb)(const uint8_t *msg, size_t len, uint8_t sig[64], void *arg);

/* Appends a checkpoint record (JOURNAL.md) signing the current journal head, in its own durable
 * write transaction: the writer's call, like ledger_apply(). fingerprint is the SHA-256 of the
 * signer's raw public key. *seq (may be NULL) gets the checkpoint's sequence number, or 0 when
 * there was nothing to sign (empty journal, or the head is a checkpoint already). Errors:
 * LEDGER_E_INVAL (also when sign fails), LEDGER_E_FULL, LEDGER_E_IO. */
int ledger_checkpoint(ledger *l, const uint8_t fingerprint[32], ledger_sign_cb sign, void *arg,
                      uint64_t *seq);

/* Makes an id from two 64-bit halves; ledger_id_eq compares. */
static inline ledger_id ledger_id_make(uint64_t hi, uint64_t lo) {
  ledger_id id = {lo, hi};
  return id;
}
static inline int ledger_id_eq(ledger_id a, ledger_id b) {
  return a.lo == b.lo && a.hi == b.hi;
}
static inline int ledger_id_is_zero(ledger_id a) {
  return a.lo == 0 && a.hi == 0;
}

#endif
