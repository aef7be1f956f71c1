/* inflight.c — the transfers not settled yet, in a chained hash table by id (inflight.h). */
#include "inflight.h"

#include <stdlib.h>
#include <string.h>

#include "store.h"

struct opsim_inflight {
  opsim_item **buckets;
  size_t nbuckets; /* a power of two */
  size_t count, credits, debits;
};

/* Ids are mostly UUIDv7: time in the first bytes, random bits at the end. */
static size_t bucket_of(const opsim_inflight *t, const uint8_t id[16]) {
  uint64_t a, b;
  memcpy(&a, id, 8);
  memcpy(&b, id + 8, 8);
  uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
  return (size_t)(h >> 23) & (t->nbuckets - 1);
}

int opsim_inflight_new(opsim_inflight **out) {
  *out = NULL;
  opsim_inflight *t = calloc(1, sizeof *t);
  if (!t)
    return -1;
  t->nbuckets = 1024;
  t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
  if (!t->buckets) {
    free(t);
    return -1;
  }
  *out = t;
  return 0;
}

void opsim_inflight_free(opsim_inflight *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->nbuckets; i++)
    for (opsim_item *x = t->buckets[i], *next; x; x = next) {
      next = x->hnext;
      free(x);
    }
  free(t->buckets);
  free(t);
}

opsim_item *opsim_inflight_find(const opsim_inflight *t, const uint8_t id[16]) {
  for (opsim_item *x = t->buckets[bucket_of(t, id)]; x; x = x->hnext)
    if (memcmp(x->id, id, 16) == 0)
      return x;
  return NULL;
}

static int grow(opsim_inflight *t) {
  size_t n = t->nbuckets * 2;
  opsim_item **b = calloc(n, sizeof *b);
  if (!b)
    return -1;
  opsim_item **old = t->buckets;
  size_t oldn = t->nbuckets;
  t->buckets = b;
  t->nbuckets = n;
  for (size_t i = 0; i < oldn; i++)
    for (opsim_item *x = old[i], *next; x; x = next) {
      next = x->hnext;
      size_t k = bucket_of(t, x->id);
      x->hnext = b[k];
      b[k] = x;
    }
  free(old);
  return 0;
}

int opsim_inflight_add(opsim_inflight *t, opsim_item *item) {
  if (t->count >= t->nbuckets && grow(t))
    return -1;
  size_t k = bucket_of(t, item->id);
  item->hnext = t->buckets[k];
  t->buckets[k] = item;
  t->count++;
  if (item->kind == OPSIM_CREDIT)
    t->credits++;
  else
    t->debits++;
  return 0;
}

void opsim_inflight_remove(opsim_inflight *t, opsim_item *item) {
  for (opsim_item **p = &t->buckets[bucket_of(t, item->id)]; *p; p = &(*p)->hnext)
    if (*p == item) {
      *p = item->hnext;
      item->hnext = NULL;
      t->count--;
      if (item->kind == OPSIM_CREDIT)
        t->credits--;
      else
        t->debits--;
      return;
    }
}

size_t opsim_inflight_count(const opsim_inflight *t, int kind) {
  return kind == OPSIM_CREDIT ? t->credits : kind == OPSIM_DEBIT ? t->debits : t->count;
}

int opsim_inflight_each(const opsim_inflight *t, int (*visit)(opsim_item *item, void *arg),
                        void *arg) {
  for (size_t i = 0; i < t->nbuckets; i++)
    for (opsim_item *x = t->buckets[i]; x; x = x->hnext) {
      int rc = visit(x, arg);
      if (rc)
        return rc;
    }
  return 0;
}
