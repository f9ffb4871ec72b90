/* json_keys.h: reading the keys of a model's config.json (diffusers and transformers write them).
 * A key that is absent leaves *out as the caller set it (the library's default); a key present with
 * a value sower cannot use fails with SOWER_EMODEL "PATH: key 'KEY': expected ..." naming the file,
 * the key and what is accepted. */
#ifndef SOWER_JSON_KEYS_H
#define SOWER_JSON_KEYS_H

#include <cjson/cJSON.h>

#include "err.h"

/* cJSON_ParseWithLengthOpts(text, len, end, 0), telling bad text from a failed allocation: cJSON returns NULL
 * alike for both, and a reader that called out of memory bad input would exit 2 ("fix your file") for what
 * is a runtime failure (exit 3). *ran_out is 1 when one of cJSON's allocations failed (the result is NULL). */
cJSON *json_parse(const char *text, size_t len, const char **end, int *ran_out);
/* Parses a config file's JSON object as Python's json.loads reads it (diffusers and transformers do): of
 * a key repeated in an object, the last value counts (cJSON's lookups would find the first), and the
 * literals of json_python_literals are read. Fails with bad_status "PATH: not a JSON object" when the
 * text is not one, SOWER_ENOMEM when memory ran out. */
int json_parse_config(const char *text, size_t len, const char *path, int bad_status, cJSON **out) SOWER_MUST_CHECK;
/* diffusers' extract_init_dict: a key named in "_use_default_values" (written by save_config for arguments left
 * at their defaults) is not read, its default applies whatever value the file gives. Removes those keys from
 * obj (private "_" keys stay: sower reads them for the file's kind); SOWER_EMODEL when the list is not a list
 * of strings. */
int json_drop_default_keys(cJSON *obj, const char *path) SOWER_MUST_CHECK;
/* 1 when a string of JSON text[0..len) holds the escape \u0000: cJSON decodes it into a NUL that ends the C
 * string there, so "a\u0000b" would be read as "a" (another key, another token); readers refuse it. */
int json_has_nul_escape(const char *text, size_t len);
/* Python's json reads Infinity, -Infinity and NaN (json.dumps writes them for such floats: DPM's
 * lambda_min_clipped is -Infinity); cJSON does not. *out: NULL when the text has none outside strings,
 * else a new copy (*out_len bytes) with Infinity written as 1e999 (strtod's infinity) and NaN as the
 * string "NaN" (no number sower reads may be NaN, and the key's check names it). -1 out of memory. */
int json_python_literals(const char *text, size_t len, char **out, size_t *out_len);

/* An integer in lo..hi; with allow_null, null sets *is_null (which may be NULL otherwise). */
int json_key_int(const cJSON *obj, const char *path, const char *key, int lo, int hi, int *out,
                 int allow_null, int *is_null) SOWER_MUST_CHECK;
int json_key_float(const cJSON *obj, const char *path, const char *key, double lo, double hi,
                   float *out) SOWER_MUST_CHECK;
int json_key_bool(const cJSON *obj, const char *path, const char *key, int *out) SOWER_MUST_CHECK;
/* A string key that must hold one of the values sower supports (NULL-terminated list); absent is
 * fine, and null too with allow_null. */
int json_key_one_of(const cJSON *obj, const char *path, const char *key, const char *const *supported,
                    int allow_null) SOWER_MUST_CHECK;

/* A list of 1..max_n integers, each in lo..hi, into out (*n of them); absent leaves out and *n. */
int json_key_int_list(const cJSON *obj, const char *path, const char *key, int lo, int hi, int max_n, int *out,
                      int *n) SOWER_MUST_CHECK;
/* A list of 1..max_n strings, each `only` (the one block type sower builds); *n of them; absent leaves *n. */
int json_key_string_list_is(const cJSON *obj, const char *path, const char *key, const char *only, int max_n,
                            int *n) SOWER_MUST_CHECK;

/* A key sower supports only at its "off" value: absent or null; what_else says what that value would
 * turn on, for the message ("SDXL's added time ids"). */
int json_key_null(const cJSON *obj, const char *path, const char *key, const char *what_else) SOWER_MUST_CHECK;
/* An integer key (or, with allow_list, a list of n such) whose every value must be `only`. */
int json_key_int_is(const cJSON *obj, const char *path, const char *key, int only, int allow_list,
                    const char *what_else) SOWER_MUST_CHECK;

#endif /* SOWER_JSON_KEYS_H */
