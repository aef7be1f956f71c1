/* currency.c — the static ISO 4217 table behind currency.h. Codes, numbers and minor units as
 * published by the ISO 4217 maintenance agency (list one). Add rows here when the scheme admits
 * a new currency; numbers and exponents must never change once ledgers use them. */
#include "currency.h"

#include <string.h>

static const sw_currency table[] = {
    /* East Africa */
    {"KES", 404, 2, "Kenyan shilling"},
    {"UGX", 800, 0, "Ugandan shilling"},
    {"TZS", 834, 2, "Tanzanian shilling"},
    {"RWF", 646, 0, "Rwandan franc"},
    {"BIF", 108, 0, "Burundian franc"},
    {"ETB", 230, 2, "Ethiopian birr"},
    {"SOS", 706, 2, "Somali shilling"},
    {"DJF", 262, 0, "Djiboutian franc"},
    {"SDG", 938, 2, "Sudanese pound"},
    {"SSP", 728, 2, "South Sudanese pound"},
    /* Central, West and Southern Africa */
    {"CDF", 976, 2, "Congolese franc"},
    {"XAF", 950, 0, "CFA franc BEAC"},
    {"XOF", 952, 0, "CFA franc BCEAO"},
    {"NGN", 566, 2, "Nigerian naira"},
    {"GHS", 936, 2, "Ghanaian cedi"},
    {"GNF", 324, 0, "Guinean franc"},
    {"SLE", 925, 2, "Sierra Leonean leone"},
    {"LRD", 430, 2, "Liberian dollar"},
    {"GMD", 270, 2, "Gambian dalasi"},
    {"ZAR", 710, 2, "South African rand"},
    {"ZMW", 967, 2, "Zambian kwacha"},
    {"MWK", 454, 2, "Malawian kwacha"},
    {"MZN", 943, 2, "Mozambican metical"},
    {"BWP", 72, 2, "Botswana pula"},
    {"NAD", 516, 2, "Namibian dollar"},
    {"LSL", 426, 2, "Lesotho loti"},
    {"SZL", 748, 2, "Swazi lilangeni"},
    {"AOA", 973, 2, "Angolan kwanza"},
    {"MGA", 969, 2, "Malagasy ariary"},
    {"MUR", 480, 2, "Mauritian rupee"},
    {"EGP", 818, 2, "Egyptian pound"},
    {"MAD", 504, 2, "Moroccan dirham"},
    {"TND", 788, 3, "Tunisian dinar"},
    /* International */
    {"USD", 840, 2, "US dollar"},
    {"EUR", 978, 2, "Euro"},
    {"GBP", 826, 2, "Pound sterling"},
};

#define TABLE_SIZE (sizeof table / sizeof table[0])

const char *sw_currency_strerror(int err) {
  switch (err) {
  case SW_CURRENCY_E_OK:
    return "ok";
  case SW_CURRENCY_E_INVAL:
    return "invalid argument";
  case SW_CURRENCY_E_NOTFOUND:
    return "unknown currency";
  default:
    return "unknown currency error";
  }
}

int sw_currency_by_code(const char *alpha, sw_currency *out) {
  if (!alpha || !out)
    return SW_CURRENCY_E_INVAL;
  for (size_t i = 0; i < TABLE_SIZE; i++) {
    if (strcmp(table[i].alpha, alpha) == 0) {
      *out = table[i];
      return 0;
    }
  }
  return SW_CURRENCY_E_NOTFOUND;
}

int sw_currency_by_number(uint32_t numeric, sw_currency *out) {
  if (!out)
    return SW_CURRENCY_E_INVAL;
  for (size_t i = 0; i < TABLE_SIZE; i++) {
    if (table[i].numeric == numeric) {
      *out = table[i];
      return 0;
    }
  }
  return SW_CURRENCY_E_NOTFOUND;
}

int sw_currency_at(size_t i, sw_currency *out) {
  if (!out)
    return SW_CURRENCY_E_INVAL;
  if (i >= TABLE_SIZE)
    return SW_CURRENCY_E_NOTFOUND;
  *out = table[i];
  return 0;
}

size_t sw_currency_count(void) {
  return TABLE_SIZE;
}
