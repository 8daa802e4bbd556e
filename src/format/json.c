/* cJSON helpers: see json.h. */
#include "format/json.h"

#include <math.h>

const char *tl_json_type(const cJSON *j) {
  if (!j) return "missing";
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsBool(j)) return "a boolean";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsNull(j)) return "null";
  return "invalid";
}

const cJSON *tl_json_get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

bool tl_json_int(const cJSON *j, double lo, double hi, int64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double d = j->valuedouble;
  if (!(d >= lo && d <= hi) || floor(d) != d) return false;
  *out = (int64_t)d;
  return true;
}
