/* errors.c — default texts of the switch's error codes (errors.h). */
#include "errors.h"

const char *sw_error_text(unsigned code) {
  switch (code) {
  case SW_ERR_ID_NOT_FOUND:
    return "generic ID not found";
  case SW_ERR_INTERNAL:
    return "internal server error";
  case SW_ERR_UNAVAILABLE:
    return "service currently unavailable";
  case SW_ERR_VALIDATION:
    return "validation error";
  case SW_ERR_MALFORMED:
    return "malformed syntax";
  case SW_ERR_MISSING_ELEMENT:
    return "missing mandatory element";
  case SW_ERR_TOO_LARGE:
    return "too large payload";
  case SW_ERR_MODIFIED_REQUEST:
    return "modified request: same transfer id, different content";
  case SW_ERR_DESTINATION:
    return "destination FSP error: payee not reachable";
  case SW_ERR_PAYEE_FSP_NOT_FOUND:
    return "payee FSP not found";
  case SW_ERR_PARTY_NOT_FOUND:
    return "party not found";
  case SW_ERR_TRANSFER_NOT_FOUND:
    return "transfer not found";
  case SW_ERR_TRANSFER_EXPIRED:
    return "transfer expired";
  case SW_ERR_PAYER_GENERIC:
    return "payer error";
  case SW_ERR_PAYER_LIQUIDITY:
    return "payer FSP insufficient liquidity";
  case SW_ERR_PAYER_LIMIT:
    return "payer limit error: net debit cap";
  case SW_ERR_PAYER_PERMISSION:
    return "payer permission error: participant suspended";
  case SW_ERR_PAYEE_REJECTED:
    return "payee rejected the transfer";
  case SW_ERR_PAYEE_PERMISSION:
    return "payee permission error: participant suspended";
  default:
    return "error";
  }
}
