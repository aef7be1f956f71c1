/* registry.h — the switch's own durable state beside the ledger: participants (operators) and
 * the party directory (DESIGN §4).
 *
 * Storage: its own LMDB environment in DATA_DIR/registry (not the ledger's). Every write is one
 * committed LMDB transaction with the default full sync before the call returns; reads use read
 * transactions. The map starts small and doubles on demand up to a maximum.
 *
 * Party directory: (party type, party id) → participant, stored tokenised. The LMDB key is
 * HMAC-SHA-256(secret, type as 4 bytes big endian ‖ 0x00 ‖ id bytes); the plain identifier is
 * never written anywhere. The 32-byte secret lives in its own file (mode 0600), created with
 * random bytes on the first open; the registry remembers a check value derived from it and
 * refuses to open with another secret (which would silently lose every entry).
 *
 * MSISDN routing: an MSISDN without an exact entry routes to the participant whose
 * msisdn_prefixes entry is its longest prefix. The prefixes of all participants are kept in
 * memory (sorted; lookup O(15 log P)) and rebuilt after each participant put.
 *
 * Threads: a registry handle is not thread-safe. Call it from one thread at a time (the
 * switch's event loop); it never blocks on other processes except for the sync of a write.
 */
#ifndef TUMA_SW_REGISTRY_H
#define TUMA_SW_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define SW_PARTICIPANT_ID_MAX 63    /* characters of a participant id: [a-z0-9-]{1,63} */
#define SW_PARTICIPANT_NAME_MAX 127 /* bytes of a display name */
#define SW_PARTICIPANT_MAX_CURRENCIES 8
#define SW_PARTICIPANT_MAX_PREFIXES 16
#define SW_MSISDN_MAX 15    /* digits of an MSISDN or an MSISDN prefix (E.164, without '+') */
#define SW_PARTY_ID_MAX 128 /* bytes of a party identifier */
#define SW_NDC_UNLIMITED (UINT64_MAX / 2) /* the largest net-debit-cap; means "no cap" */

/* Participant status; the values are those of tuma.v1.ParticipantStatus. */
enum {
  SW_PARTICIPANT_ACTIVE = 1,
  SW_PARTICIPANT_SUSPENDED = 2,
};

/* Party identifier types; the values are those of tuma.v1.PartyIdType. */
enum {
  SW_PARTY_MSISDN = 1, /* 1-15 digits, E.164 without '+'; routes by prefix too */
  SW_PARTY_NATIONAL_ID = 2,
  SW_PARTY_ACCOUNT_ID = 3,
  SW_PARTY_REFUGEE_ID = 4,
  SW_PARTY_BUSINESS_ID = 5,
};

/* A participant (an operator). Strings are NUL-terminated inside their arrays. Only the first
 * n_currencies / n_prefixes entries of the arrays are meaningful; net_debit_cap[i] is the cap
 * for currencies[i], in minor units, at most SW_NDC_UNLIMITED. */
typedef struct sw_participant {
  char id[64];          /* [a-z0-9-]{1,63}; also the certificate's CN */
  char name[128];       /* 1-127 bytes, no control characters */
  uint32_t number;      /* dense from 1, never reused, assigned at the first put */
  uint8_t status;       /* SW_PARTICIPANT_ACTIVE / _SUSPENDED */
  uint8_t n_currencies; /* 1..SW_PARTICIPANT_MAX_CURRENCIES */
  uint16_t currencies[SW_PARTICIPANT_MAX_CURRENCIES]; /* ISO 4217 numeric, distinct, known */
  uint64_t net_debit_cap[SW_PARTICIPANT_MAX_CURRENCIES];
  char msisdn_prefixes[SW_PARTICIPANT_MAX_PREFIXES][16]; /* 1-15 digits each, distinct */
  uint8_t n_prefixes;                                    /* 0..SW_PARTICIPANT_MAX_PREFIXES */
} sw_participant;

/* Return codes (0 = ok). */
typedef enum sw_registry_error {
  SW_REGISTRY_E_OK = 0,
  SW_REGISTRY_E_NOMEM = 1,    /* allocation failed */
  SW_REGISTRY_E_INVAL = 2,    /* bad argument: malformed id, unknown currency, bad party … */
  SW_REGISTRY_E_NOTFOUND = 3, /* no such participant or party */
  SW_REGISTRY_E_CONFLICT = 4, /* an MSISDN prefix already belongs to another participant */
  SW_REGISTRY_E_FULL = 5,     /* the map reached its maximum size, or the disk is full */
  SW_REGISTRY_E_IO = 6,       /* the storage failed; the write did not commit */
  SW_REGISTRY_E_VERSION = 7,  /* DATA_DIR/registry is of another format version */
  SW_REGISTRY_E_SECRET = 8,   /* secret file unreadable, wrong size, readable by others, or
                                 not the secret this registry was created with */
  SW_REGISTRY_E_CRYPTO = 9,   /* OpenSSL failed (random bytes, HMAC) */
  SW_REGISTRY_E_CORRUPT = 10, /* a stored record has an unexpected size */
  SW_REGISTRY_E_LMDB = 11,    /* any other LMDB error */
} sw_registry_error;

/* A static message for a sw_registry_error; never NULL. */
const char *sw_registry_strerror(int err);

typedef struct sw_registry sw_registry;

typedef struct sw_registry_options {
  const char *secret_file; /* the directory secret; NULL = DATA_DIR/directory.key */
  size_t map_size;         /* initial LMDB map size in bytes; 0 = 16 MiB */
  size_t map_size_max;     /* the map doubles up to this; 0 = 64 GiB */
} sw_registry_options;

/* Opens (creating if needed) the registry of data directory `data_dir`: the LMDB environment
 * DATA_DIR/registry (directories created, mode 0750) and the directory secret. A missing secret
 * file is created (32 random bytes, mode 0600, synced) only for a registry that has never had
 * one; an existing one must be a regular file of exactly 32 bytes with no group or other
 * permission bits. opts may be NULL for the defaults; strings are borrowed for the call.
 * On failure, when err is not NULL, a one-line reason (naming the file and the OS error) is
 * written to err[errlen]. On success *out owns everything; close with sw_registry_close().
 * Errors: _INVAL, _NOMEM, _SECRET, _CRYPTO, _VERSION, _IO, _FULL, _LMDB. */
int sw_registry_open(const char *data_dir, const sw_registry_options *opts, sw_registry **out,
                     char *err, size_t errlen);

/* Closes the registry; accepts NULL. The secret is wiped from memory. */
void sw_registry_close(sw_registry *r);

/* ---- participants ------------------------------------------------------------------------ */

/* Zeroes *p and sets the defaults: status active, every net-debit-cap SW_NDC_UNLIMITED. */
void sw_participant_init(sw_participant *p);

/* The index i of currency `numeric` in p->currencies[0..n_currencies), or -1. */
int sw_participant_currency_index(const sw_participant *p, uint16_t numeric);

/* Checks a participant as sw_registry_put_participant does, except for prefix conflicts with
 * other participants. 0 or SW_REGISTRY_E_INVAL. p->number is not looked at. */
int sw_participant_validate(const sw_participant *p);

/* Creates participant p->id, or replaces all its fields except the number. p->number is
 * ignored: a new participant gets the next number (from 1, never reused), an existing one keeps
 * its own; either way it is written to *number when number is not NULL. One synced write
 * transaction, then the in-memory prefix table is rebuilt (O(P log P) over all prefixes).
 * p is borrowed for the call. Errors: _INVAL (see sw_participant_validate), _CONFLICT (one of
 * its MSISDN prefixes belongs to another participant), _FULL, _IO, _NOMEM, _LMDB. */
int sw_registry_put_participant(sw_registry *r, const sw_participant *p, uint32_t *number);

/* Copies participant `id` / `number` to *out. One read transaction. _NOTFOUND if none. */
int sw_registry_get_participant(sw_registry *r, const char *id, sw_participant *out);
int sw_registry_get_participant_by_number(sw_registry *r, uint32_t number, sw_participant *out);

/* Called once per participant by sw_registry_list_participants; p is borrowed for the call.
 * Return 0 to go on, anything else to stop. */
typedef int (*sw_registry_participant_cb)(const sw_participant *p, void *arg);

/* Calls cb for every participant in number order. The participants are copied out of the read
 * transaction first, so cb may call any registry function (changes are not seen by this
 * listing). O(P). Returns 0, the first non-zero value cb returned, or an error
 * (_NOMEM, _CORRUPT, _LMDB). */
int sw_registry_list_participants(sw_registry *r, sw_registry_participant_cb cb, void *arg);

/* ---- party directory --------------------------------------------------------------------- */

/* One party identifier; id is borrowed. */
typedef struct sw_party {
  uint32_t type;  /* SW_PARTY_* */
  const char *id; /* NUL-terminated */
} sw_party;

/* How a lookup matched. */
typedef enum sw_party_match {
  SW_PARTY_MATCH_EXACT = 1,  /* a directory entry */
  SW_PARTY_MATCH_PREFIX = 2, /* an MSISDN routed by a participant's msisdn_prefixes */
} sw_party_match;

/* 0 if (type, id) is a well-formed party identifier, else SW_REGISTRY_E_INVAL: type one of
 * SW_PARTY_*, id 1..SW_PARTY_ID_MAX bytes without control characters, and for an MSISDN
 * 1..SW_MSISDN_MAX digits. */
int sw_registry_party_valid(uint32_t type, const char *id);

/* Points each of parties[0..n) at participant `participant_id` (creating or replacing the
 * entry), all in one synced write transaction: all or nothing. O(n log N). Everything is
 * borrowed for the call. Ownership is not checked: a caller that lets operators register only
 * their own parties looks the party up first. Errors: _INVAL (a malformed party, n == 0),
 * _NOTFOUND (no such participant), _FULL, _IO, _CRYPTO, _LMDB. */
int sw_registry_put_parties(sw_registry *r, const sw_party *parties, size_t n,
                            const char *participant_id);

/* The same for one party. */
int sw_registry_put_party(sw_registry *r, uint32_t type, const char *id,
                          const char *participant_id);

/* Removes the entry of (type, id). Prefix routing is not affected. One synced write
 * transaction. Errors: _INVAL, _NOTFOUND (no entry), _FULL, _IO, _CRYPTO, _LMDB. */
int sw_registry_remove_party(sw_registry *r, uint32_t type, const char *id);

/* Which participant serves party (type, id): the exact entry first; for an MSISDN without one,
 * the participant owning the longest matching msisdn_prefixes entry, whatever its status
 * (active or suspended: the caller decides what a suspended payee means). Copies the
 * participant to *out and, when match is not NULL, how it matched to *match. One read
 * transaction plus one HMAC. Errors: _INVAL, _NOTFOUND, _CRYPTO, _CORRUPT, _LMDB. */
int sw_registry_lookup_party(sw_registry *r, uint32_t type, const char *id, sw_participant *out,
                             sw_party_match *match);

/* ---- tokens ------------------------------------------------------------------------------ */

/* The token of an identifier for storage outside the directory (the disbursement beneficiary
 * registry): HMAC-SHA-256(secret, label ‖ 0x00 ‖ type BE32 ‖ 0x00 ‖ id), so the plain
 * identifier never needs to be kept and distinct labels give unrelated tokens. label and id
 * are borrowed NUL-terminated strings (label ≤ 32 bytes). Errors: _INVAL, _CRYPTO. */
int sw_registry_token(sw_registry *r, const char *label, uint32_t type, const char *id,
                      unsigned char out[32]);

/* ---- logging ----------------------------------------------------------------------------- */

/* Masks an identifier for logs: keeps the first 3 and the last 2 bytes and replaces the others
 * with '*' ("254712345678" → "254*******78"); an input shorter than 8 bytes becomes all '*'
 * (so a short id never shows more than it hides). The output has the input's length,
 * truncated to outlen - 1 bytes, always NUL-terminated when outlen > 0. NULL in → "". */
void sw_mask(const char *in, char *out, size_t outlen);

#endif
