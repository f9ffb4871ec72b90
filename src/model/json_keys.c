/* json_keys.c: see json_keys.h. */
#include "json_keys.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* Members of one object, by name then position (qsort's order for equal names is unspecified). */
typedef struct {
    cJSON *item;
    size_t at;
} Member;

static int member_cmp(const void *a, const void *b)
{
    const Member *x = a, *y = b;
    int c = strcmp(x->item->string ? x->item->string : "", y->item->string ? y->item->string : "");
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* Drops every member of an object that a later member of the same name overrides, at every depth (sorted
 * by name: n log n, so a config of many keys costs no more than reading it). -1 out of memory (some kept). */
static int keep_last_of_each_key(cJSON *node)
{
    if (!node) return 0;
    size_t n = 0;
    for (cJSON *item = node->child; item; item = item->next) n++;
    const int sorted = cJSON_IsObject(node) && n > 1;
    Member *members = sorted ? malloc(n * sizeof *members) : NULL; /* (n,) */
    if (sorted && !members) return -1;
    if (members) {
        size_t k = 0;
        for (cJSON *item = node->child; item; item = item->next, k++) members[k] = (Member){item, k};
        qsort(members, n, sizeof *members, member_cmp);
        for (k = 0; k + 1 < n; k++)
            if (members[k].item->string && members[k + 1].item->string &&
                strcmp(members[k].item->string, members[k + 1].item->string) == 0)
                cJSON_Delete(cJSON_DetachItemViaPointer(node, members[k].item));
        free(members);
    }
    for (cJSON *item = node->child; item; item = item->next)
        if (keep_last_of_each_key(item) != 0) return -1;
    return 0;
}

/* cJSON's allocations go through count_failed_malloc (json_parse installs it once): the number of this
 * thread's failed ones tells a parse that ran out of memory from one that met bad text. */
static _Thread_local unsigned long failed_allocations;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void *count_failed_malloc(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) failed_allocations++;
    return p;
}

static void install_hooks(void)
{
    cJSON_Hooks hooks = {count_failed_malloc, free};
    cJSON_InitHooks(&hooks);
}

cJSON *json_parse(const char *text, size_t len, const char **end, int *ran_out)
{
    pthread_once(&hooks_once, install_hooks);
    const unsigned long before = failed_allocations;
    const char *stop = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &stop, 0);
    if (end) *end = stop;
    *ran_out = failed_allocations != before;
    if (*ran_out) { /* a tree cJSON finished despite a failed allocation is not trusted either */
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

int json_has_nul_escape(const char *text, size_t len)
{
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') {
            in_string = !in_string;
        } else if (in_string && text[i] == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && len - i >= 6 && memcmp(text + i + 2, "0000", 4) == 0) return 1;
            i++; /* the escaped character (a quote or a backslash) is no delimiter */
        }
    }
    return 0;
}

int json_python_literals(const char *text, size_t len, char **out, size_t *out_len)
{
    static const struct {
        const char *word, *as;
        size_t n;
    } literals[] = {{"Infinity", "1e999", 8}, {"NaN", "\"NaN\"", 3}};
    const size_t n_literals = sizeof literals / sizeof *literals;
    *out = NULL;
    char *copy = NULL; /* (2 * len,) at most: "NaN" grows by 2 bytes of 3 */
    size_t used = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        size_t k = 0;
        while (!in_string && k < n_literals && !(len - i >= literals[k].n && memcmp(text + i, literals[k].word, literals[k].n) == 0))
            k++;
        if (!in_string && k < n_literals) {
            if (!copy) {
                if (!(copy = malloc(2 * len))) return -1;
                memcpy(copy, text, i), used = i;
            }
            memcpy(copy + used, literals[k].as, strlen(literals[k].as));
            used += strlen(literals[k].as), i += literals[k].n - 1;
            continue;
        }
        if (in_string && text[i] == '\\' && i + 1 < len) { /* an escaped character stays in the string */
            if (copy) copy[used++] = text[i];
            i++;
        } else if (text[i] == '"') {
            in_string = !in_string;
        }
        if (copy) copy[used++] = text[i];
    }
    if (copy) *out = copy, *out_len = used;
    return 0;
}

int json_parse_config(const char *text, size_t len, const char *path, int bad_status, cJSON **out)
{
    *out = NULL;
    char *rewritten = NULL;
    if (json_python_literals(text, len, &rewritten, &len) != 0)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
    int ran_out;
    cJSON *root = json_parse(rewritten ? rewritten : text, len, NULL, &ran_out);
    free(rewritten);
    if (!ran_out && keep_last_of_each_key(root) != 0) ran_out = 1;
    if (ran_out) {
        cJSON_Delete(root);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return SOWER_FAIL(bad_status, "%s: not a JSON object", path);
    }
    *out = root;
    return SOWER_OK;
}

int json_drop_default_keys(cJSON *obj, const char *path)
{
    const cJSON *defaults = cJSON_GetObjectItemCaseSensitive(obj, "_use_default_values");
    if (!defaults || cJSON_IsNull(defaults)) return SOWER_OK;
    const cJSON *n;
    int ok = cJSON_IsArray(defaults);
    cJSON_ArrayForEach(n, defaults) ok = ok && cJSON_IsString(n);
    if (!ok)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '_use_default_values': expected a list of key names", path);
    cJSON_ArrayForEach(n, defaults)
        if (n->valuestring[0] != '_') cJSON_DeleteItemFromObjectCaseSensitive(obj, n->valuestring);
    return SOWER_OK;
}

int json_key_int(const cJSON *obj, const char *path, const char *key, int lo, int hi, int *out,
                 int allow_null, int *is_null)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (is_null) *is_null = 0;
    if (!v) return SOWER_OK;
    if (cJSON_IsNull(v) && allow_null) {
        *is_null = 1;
        return SOWER_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected an integer in %d..%d%s", path, key, lo, hi,
                          allow_null ? " or null" : "");
    *out = (int)v->valuedouble;
    return SOWER_OK;
}

int json_key_float(const cJSON *obj, const char *path, const char *key, double lo, double hi, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return SOWER_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected a number in %g..%g", path, key, lo, hi);
    *out = (float)v->valuedouble;
    return SOWER_OK;
}

int json_key_bool(const cJSON *obj, const char *path, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return SOWER_OK;
    if (!cJSON_IsBool(v)) return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected true or false", path, key);
    *out = cJSON_IsTrue(v);
    return SOWER_OK;
}

int json_key_one_of(const cJSON *obj, const char *path, const char *key, const char *const *supported,
                    int allow_null)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || (allow_null && cJSON_IsNull(v))) return SOWER_OK;
    if (cJSON_IsString(v))
        for (int i = 0; supported[i]; i++)
            if (strcmp(v->valuestring, supported[i]) == 0) return SOWER_OK;
    char list[256] = "";
    for (int i = 0; supported[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? ", " : "", supported[i]);
    char *found = cJSON_PrintUnformatted(v);
    int status = SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': found %s, sower supports %s%s", path, key,
                            found ? found : "?", list, allow_null ? " or null" : "");
    cJSON_free(found);
    return status;
}

static int unsupported(const cJSON *v, const char *path, const char *key, const char *supported, const char *what_else)
{
    char *found = cJSON_PrintUnformatted(v);
    int status = SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': found %s, sower supports %s (other values mean %s)", path, key,
                            found ? found : "?", supported, what_else);
    cJSON_free(found);
    return status;
}

int json_key_null(const cJSON *obj, const char *path, const char *key, const char *what_else)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return SOWER_OK;
    return unsupported(v, path, key, "null", what_else);
}

int json_key_int_is(const cJSON *obj, const char *path, const char *key, int only, int allow_list,
                    const char *what_else)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return SOWER_OK;
    int ok = cJSON_IsNumber(v) && v->valuedouble == only;
    if (allow_list && cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        ok = 1;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) ok &= cJSON_IsNumber(e) && e->valuedouble == only;
    }
    if (ok)
        return SOWER_OK;
    char supported[32];
    snprintf(supported, sizeof supported, "%d", only);
    return unsupported(v, path, key, supported, what_else);
}

int json_key_int_list(const cJSON *obj, const char *path, const char *key, int lo, int hi, int max_n, int *out, int *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return SOWER_OK;
    int ok = cJSON_IsArray(v) && cJSON_GetArraySize(v) >= 1 && cJSON_GetArraySize(v) <= max_n, i = 0;
    const cJSON *e;
    if (ok)
        cJSON_ArrayForEach(e, v)
        {
            ok &= cJSON_IsNumber(e) && e->valuedouble == floor(e->valuedouble) && e->valuedouble >= lo &&
                  e->valuedouble <= hi;
            if (ok) out[i++] = (int)e->valuedouble;
        }
    if (!ok)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected a list of 1..%d integers in %d..%d", path, key, max_n,
                          lo, hi);
    *n = i;
    return SOWER_OK;
}

int json_key_string_list_is(const cJSON *obj, const char *path, const char *key, const char *only, int max_n, int *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return SOWER_OK;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1 || cJSON_GetArraySize(v) > max_n)
        return SOWER_FAIL(SOWER_EMODEL, "%s: key '%s': expected a list of 1..%d block types", path, key, max_n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e) || strcmp(e->valuestring, only) != 0)
            return unsupported(e, path, key, only, "another architecture");
        i++;
    }
    *n = i;
    return SOWER_OK;
}
