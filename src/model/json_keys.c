/* json_keys.c: see json_keys.h. */
#include "json_keys.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Drops every member of an object that a later member of the same name overrides, at every depth. */
static void keep_last_of_each_key(cJSON *node)
{
    for (cJSON *item = node ? node->child : NULL, *next; item; item = next) {
        next = item->next;
        int overridden = 0;
        for (const cJSON *later = next; cJSON_IsObject(node) && item->string && later && !overridden; later = later->next)
            overridden = later->string && strcmp(later->string, item->string) == 0;
        if (overridden)
            cJSON_Delete(cJSON_DetachItemViaPointer(node, item));
        else
            keep_last_of_each_key(item);
    }
}

cJSON *json_parse_config(const char *text, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    keep_last_of_each_key(root);
    return root;
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
