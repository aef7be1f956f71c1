/* inflight.h — the transfers a simulated operator has not settled yet, in memory, by id: its
 * payments (debits reserved from a wallet) and the credits it accepted as payee. Each mirrors a
 * pending record of the store (store.h) and says where the transfer stands on the wire.
 */
#ifndef TUMA_ADAPTERS_OPSIM_INFLIGHT_H
#define TUMA_ADAPTERS_OPSIM_INFLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "msisdn.h"

typedef enum opsim_phase {
  OPSIM_PHASE_DURABLE = 0, /* recorded in a batch not yet committed: nothing sent */
  OPSIM_PHASE_SENT = 1,    /* the prepare / fulfil awaits its answer */
  OPSIM_PHASE_UNKNOWN = 2, /* its state at the switch must be asked (query at next_query_ms) */
  OPSIM_PHASE_QUERY = 3,   /* a query awaits its answer */
} opsim_phase;

typedef struct opsim_item {
  uint8_t id[16];
  uint8_t kind;          /* opsim_kind (store.h) */
  uint8_t phase;         /* opsim_phase */
  uint8_t has_condition; /* commit with the derived fulfilment (payee.c) */
  uint8_t short_expiry;  /* a debit sent with a deliberately short expiration */
  uint32_t wallet;
  uint32_t queries; /* how many asked so far (back-off) */
  uint64_t amount;
  uint64_t expiration_ms, created_ms;
  uint64_t next_query_ms;       /* OPSIM_PHASE_UNKNOWN: not before (Unix ms) */
  int64_t sent_us;              /* when the prepare went out (monotonic µs); 0 unknown */
  char payee[OPSIM_MSISDN_LEN]; /* a debit: the MSISDN paid ("" after a restart) */
  struct opsim_item *hnext;     /* the table's chain */
  struct opsim_item *snext;     /* the list of items to start after a commit */
} opsim_item;

typedef struct opsim_inflight opsim_inflight;

/* An empty table. Returns 0 and *out, or -1 (out of memory). Free with opsim_inflight_free(),
 * which frees the items still in it. */
int opsim_inflight_new(opsim_inflight **out);
void opsim_inflight_free(opsim_inflight *t);

/* The item with this id, or NULL. O(1) expected. The item stays the table's. */
opsim_item *opsim_inflight_find(const opsim_inflight *t, const uint8_t id[16]);

/* Adds item (kept by the table from now on; its id must not be in the table). Returns 0, or -1
 * when the table could not grow (the item is then not added). Amortised O(1). */
int opsim_inflight_add(opsim_inflight *t, opsim_item *item);

/* Takes item out of the table (it is the caller's again). O(1) expected. */
void opsim_inflight_remove(opsim_inflight *t, opsim_item *item);

/* How many items, in total and per kind (OPSIM_CREDIT, OPSIM_DEBIT). */
size_t opsim_inflight_count(const opsim_inflight *t, int kind);

/* Calls visit for each item until it returns non-zero (returned). visit must not add or remove
 * items. O(items + buckets). */
int opsim_inflight_each(const opsim_inflight *t, int (*visit)(opsim_item *item, void *arg),
                        void *arg);

#endif
