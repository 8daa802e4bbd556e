/* cJSON helpers shared by the JSON readers: the Hugging Face config
 * (format/hf.c), the Torchless .bin header (format/native.c) and the Hugging
 * Face tokenizer files (tokenizer/hf_tokenizer.c). */
#ifndef TL_FORMAT_JSON_H
#define TL_FORMAT_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* What j is, for error messages: "a string", "a number", "a boolean",
 * "an array", "an object", "null"; "missing" for NULL. */
const char *tl_json_type(const cJSON *j);

/* Member k of object o; NULL when o is not an object or has no member k. */
const cJSON *tl_json_get(const cJSON *o, const char *k);

/* A JSON number that is an integer in [lo, hi]. */
bool tl_json_int(const cJSON *j, double lo, double hi, int64_t *out);

#endif
