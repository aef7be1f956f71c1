/* errors.h — the FSPIOP-style error codes the switch sends to operators (proto/README.md has
 * the full table for clients). One table, one place: sw_error_text() gives the default text. */
#ifndef TUMA_SWITCH_ERRORS_H
#define TUMA_SWITCH_ERRORS_H

enum {
  SW_ERR_INTERNAL = 2001,            /* internal server error */
  SW_ERR_UNAVAILABLE = 2003,         /* service currently unavailable */
  SW_ERR_VALIDATION = 3100,          /* generic validation error, payer mismatch, bad fulfilment */
  SW_ERR_MALFORMED = 3101,           /* malformed syntax: the frame did not decode */
  SW_ERR_MISSING_ELEMENT = 3102,     /* missing mandatory element */
  SW_ERR_TOO_LARGE = 3104,           /* frame larger than max_frame_bytes */
  SW_ERR_MODIFIED_REQUEST = 3106,    /* same transfer id, different content */
  SW_ERR_ID_NOT_FOUND = 3200,        /* generic id not found: programme, batch */
  SW_ERR_DESTINATION = 3201,         /* payee participant not connected or not reachable */
  SW_ERR_PAYEE_FSP_NOT_FOUND = 3203, /* payee participant unknown */
  SW_ERR_PARTY_NOT_FOUND = 3204,     /* party not in the directory */
  SW_ERR_TRANSFER_NOT_FOUND = 3208,
  SW_ERR_TRANSFER_EXPIRED = 3303,
  SW_ERR_PAYER_GENERIC = 4000,
  SW_ERR_PAYER_LIQUIDITY = 4001,  /* payer's prefunded liquidity would be exceeded */
  SW_ERR_PAYER_LIMIT = 4200,      /* payer's net debit cap would be exceeded */
  SW_ERR_PAYER_PERMISSION = 4300, /* payer suspended */
  SW_ERR_PAYEE_REJECTED = 5105,
  SW_ERR_PAYEE_PERMISSION = 5300, /* payee suspended */
};

/* The default text for a code; never NULL. */
const char *sw_error_text(unsigned code);

#endif
