/* manifest.c: read and check a job manifest with libyaml's document API. */
#define _DEFAULT_SOURCE /* realpath */
#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_file.h"
#include "outfile.h"
#include "seeds.h"
#include "utf8.h"

enum {
    MANIFEST_MAX_BYTES = 64 << 20,
    MAX_RANGES = 4096,
    MAX_LIST = 1000000,
    MAX_PATH_CHARS = 4096,
};

typedef struct {
    const Job *job;
    yaml_document_t *doc;
} Ctx;

/* ---- errors: FILE:LINE:COLUMN: expected ..., found ... ---- */

static void describe(const yaml_node_t *n, char *out, size_t size)
{
    if (!n)
        snprintf(out, size, "nothing");
    else if (n->type == YAML_MAPPING_NODE)
        snprintf(out, size, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        snprintf(out, size, "a list");
    else { /* quoted, control bytes (an escaped NUL) shown as \xNN; cut at a character's start past 57 bytes */
        const unsigned char *v = n->data.scalar.value;
        const size_t len = n->data.scalar.length;
        size_t keep = len > 60 ? 57 : len, k = 0, used = 1;
        while (keep < len && keep > 0 && (v[keep] & 0xC0) == 0x80) keep--;
        out[0] = '\'';
        for (; k < keep && used + 8 < size; k++)
            used += (size_t)snprintf(out + used, size - used, v[k] < 0x20 ? "\\x%02x" : "%c", v[k]);
        snprintf(out + used, size - used, "%s'", k < len ? "..." : "");
    }
}

/* A scalar with an escaped NUL ("a\0b"): C strings would read only its start. */
static int holds_nul(const yaml_node_t *n) { return strlen((const char *)n->data.scalar.value) != n->data.scalar.length; }

static int fail_at(const Ctx *c, const yaml_node_t *n, const char *key, const char *expected)
{
    char found[80];
    describe(n, found, sizeof found);
    return SOWER_FAIL(SOWER_EMANIFEST, "%s:%zu:%zu: %s%s%sexpected %s, found %s", c->job->manifest_path,
                      n ? n->start_mark.line + 1 : 1, n ? n->start_mark.column + 1 : 1, key ? "key '" : "",
                      key ? key : "", key ? "': " : "", expected, found);
}

/* ---- scalars, YAML 1.2 core schema ---- */

static Mark mark_of(const yaml_node_t *n)
{
    return (Mark){(uint32_t)n->start_mark.line + 1, (uint32_t)n->start_mark.column + 1};
}

static int is_plain(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static const char *text_of(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_null(const yaml_node_t *n)
{
    if (!is_plain(n))
        return 0;
    const char *s = text_of(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int is_bool_text(const char *s)
{
    return !strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "false") ||
           !strcmp(s, "False") || !strcmp(s, "FALSE");
}

/* A plain decimal integer ([-+]?[0-9]+) that fits uint64 (negatives are reported as out of range). */
static int get_u64(const Ctx *c, const yaml_node_t *n, const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char expected[128];
    snprintf(expected, sizeof expected, "an integer in %llu..%llu", (unsigned long long)lo, (unsigned long long)hi);
    if (!is_plain(n))
        return fail_at(c, n, key, expected);
    const char *s = text_of(n);
    const char *p = s + (*s == '+' || *s == '-');
    if (!*p)
        return fail_at(c, n, key, expected);
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return fail_at(c, n, key, expected);
    if (*s == '-' && strspn(p, "0") != strlen(p))
        return fail_at(c, n, key, expected);
    errno = 0;
    unsigned long long v = strtoull(p, NULL, 10);
    if (errno == ERANGE || v < lo || v > hi)
        return fail_at(c, n, key, expected);
    *out = v;
    return SOWER_OK;
}

static int get_int(const Ctx *c, const yaml_node_t *n, const char *key, int lo, int hi, int *out)
{
    uint64_t v = 0;
    SOWER_TRY(get_u64(c, n, key, (uint64_t)lo, (uint64_t)hi, &v));
    *out = (int)v;
    return SOWER_OK;
}

/* A plain number (integer or decimal float, no inf/nan) in lo..hi (lo exclusive when open_lo). */
static int get_number(const Ctx *c, const yaml_node_t *n, const char *key, double lo, int open_lo, double hi,
                      double *out)
{
    char expected[128];
    if (open_lo)
        snprintf(expected, sizeof expected, "a number above %g and at most %g", lo, hi);
    else
        snprintf(expected, sizeof expected, "a number in %g..%g", lo, hi);
    if (!is_plain(n))
        return fail_at(c, n, key, expected);
    const char *s = text_of(n);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    int numeric = *s && end && *end == '\0' && strpbrk(s, "xXnNiI") == NULL;
    /* No ERANGE test: an underflow (1e-320, 1e-400) is the nearest double, as YAML and JSON Schema
     * readers take it, and an overflow is an infinity that the range refuses. */
    if (!numeric || !(open_lo ? v > lo : v >= lo) || !(v <= hi))
        return fail_at(c, n, key, expected);
    *out = v;
    return SOWER_OK;
}

/* A string: a quoted scalar, or a plain one that is not null, a boolean or a number. */
/* A string of 1..max_chars characters (code points, as the schema's maxLength counts them; names and
 * Slurm words, ASCII by their schema patterns, are as many bytes), or with in_bytes of 1..max_chars
 * bytes (paths: their buffers' size). */
static int get_string_of(const Ctx *c, const yaml_node_t *n, const char *key, size_t max_chars, int in_bytes,
                         const char **out)
{
    char expected[80];
    snprintf(expected, sizeof expected, "a string of 1..%zu %s", max_chars, in_bytes ? "bytes" : "characters");
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0 ||
        strlen(text_of(n)) != n->data.scalar.length ||
        (in_bytes ? n->data.scalar.length : utf8_chars(text_of(n), n->data.scalar.length)) > max_chars)
        return fail_at(c, n, key, expected);
    if (is_plain(n)) {
        const char *s = text_of(n);
        char *end = NULL;
        (void)strtod(s, &end);
        /* YAML 1.2 core's floats: decimal forms (strtod also reads hex, inf, nan: not floats there), .inf, .nan */
        static const char *const special[] = {".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf",
                                              "+.INF", ".nan", ".NaN", ".NAN"};
        int special_float = 0;
        for (size_t i = 0; i < sizeof special / sizeof *special; i++) special_float |= strcmp(s, special[i]) == 0;
        if (is_null(n) || is_bool_text(s) || special_float || (end && *end == '\0' && strpbrk(s, "xXnNiI") == NULL))
            return fail_at(c, n, key, expected);
    }
    *out = text_of(n);
    return SOWER_OK;
}

static int get_string(const Ctx *c, const yaml_node_t *n, const char *key, size_t max_chars, const char **out)
{
    return get_string_of(c, n, key, max_chars, 0, out);
}

/* A prompt: a string as get_string, or "" quoted (the unconditional prompt, as diffusers takes it; a plain
 * empty scalar is null). */
static int get_prompt(const Ctx *c, const yaml_node_t *n, const char *key, const char **out)
{
    if (n && n->type == YAML_SCALAR_NODE && !is_plain(n) && n->data.scalar.length == 0) {
        *out = "";
        return SOWER_OK;
    }
    return get_string(c, n, key, JOB_MAX_PROMPT_CHARS, out);
}

static int get_path(const Ctx *c, const yaml_node_t *n, const char *key, const char **out)
{
    return get_string_of(c, n, key, MAX_PATH_CHARS, 1, out);
}

static int get_enum(const Ctx *c, const yaml_node_t *n, const char *key, const char *const *values, int *out)
{
    char expected[640] = "one of "; /* every scheduler's name fits */
    for (int i = 0; values[i]; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%s", i ? ", " : "", values[i]);
    if (n && n->type == YAML_SCALAR_NODE && !holds_nul(n))
        for (int i = 0; values[i]; i++)
            if (strcmp(text_of(n), values[i]) == 0) {
                *out = i;
                return SOWER_OK;
            }
    return fail_at(c, n, key, expected);
}

/* true or false, unquoted: "false" in quotes is a string in YAML (and the schema refuses it). */
static int get_bool(const Ctx *c, const yaml_node_t *n, const char *key, int *out)
{
    static const char *const booleans[] = {"false", "true", NULL};
    if (!is_plain(n)) return fail_at(c, n, key, "true or false (unquoted)");
    return get_enum(c, n, key, booleans, out);
}

/* ---- mappings: known keys only, no duplicates ---- */

typedef struct {
    const char *name;
    int required;
    yaml_node_t *value; /* filled by get_mapping */
} Field;

static int get_mapping(const Ctx *c, const yaml_node_t *n, const char *key, Field *fields, int n_fields)
{
    char expected[512] = "a mapping with keys ";
    for (int i = 0; i < n_fields; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%s", i ? ", " : "",
                 fields[i].name);
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail_at(c, n, key, expected);
    for (int i = 0; i < n_fields; i++)
        fields[i].value = NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE || holds_nul(k))
            return fail_at(c, k, key, "a plain key");
        int known = -1;
        for (int i = 0; i < n_fields; i++)
            if (strcmp(text_of(k), fields[i].name) == 0)
                known = i;
        if (known < 0) {
            char what[600];
            snprintf(what, sizeof what, "one of the keys %s", expected + strlen("a mapping with keys "));
            return fail_at(c, k, key, what);
        }
        if (fields[known].value)
            return fail_at(c, k, key, "each key once");
        fields[known].value = yaml_document_get_node(c->doc, p->value);
    }
    for (int i = 0; i < n_fields; i++)
        if (fields[i].required && !fields[i].value) {
            char what[160];
            snprintf(what, sizeof what, "a key '%s'", fields[i].name);
            return fail_at(c, n, key, what);
        }
    return SOWER_OK;
}

/* ---- paths relative to the manifest ---- */

static int resolve_path(const Job *job, const char *rel, char **out)
{
    const char *slash = strrchr(job->manifest_path, '/');
    size_t dir_len = slash ? (size_t)(slash - job->manifest_path) : 0;
    size_t n = dir_len + strlen(rel) + 3;
    *out = malloc(n);
    if (!*out)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (rel[0] == '/' || !slash)
        snprintf(*out, n, "%s", rel);
    else
        snprintf(*out, n, "%.*s/%s", (int)dir_len, job->manifest_path, rel);
    return SOWER_OK;
}

/* ---- sections ---- */

static int parse_model(const Ctx *c, Job *job, const yaml_node_t *n)
{
    const char *path = NULL;
    if (n)
        job->model_mark = mark_of(n);
    if (n && n->type == YAML_MAPPING_NODE) {
        Field f[] = {{"path", 1, NULL}, {"digest", 0, NULL}};
        SOWER_TRY(get_mapping(c, n, "model", f, 2));
        SOWER_TRY(get_path(c, f[0].value, "model.path", &path));
        if (f[1].value) {
            const char *d = NULL;
            SOWER_TRY(get_string(c, f[1].value, "model.digest", 71, &d));
            int ok = strlen(d) == 71 && strncmp(d, "sha256:", 7) == 0;
            for (int i = 7; ok && i < 71; i++)
                ok = isdigit((unsigned char)d[i]) || (d[i] >= 'a' && d[i] <= 'f');
            if (!ok)
                return fail_at(c, f[1].value, "model.digest", "\"sha256:\" and 64 lower-case hex digits");
            for (int i = 0; i < DIGEST_BYTES; i++) {
                char byte[3] = {d[7 + 2 * i], d[8 + 2 * i], 0};
                job->model_digest[i] = (unsigned char)strtoul(byte, NULL, 16);
            }
            job->model_digest_pinned = 1;
        }
    } else if (n && n->type == YAML_SCALAR_NODE) {
        SOWER_TRY(get_path(c, n, "model", &path));
    } else {
        return fail_at(c, n, "model", "a model folder path or {path: ..., digest: sha256:...}");
    }
    SOWER_TRY(resolve_path(job, path, &job->model_path));
    char *absolute = realpath(job->model_path, NULL); /* a clean name when the folder exists */
    if (absolute) {
        free(job->model_path);
        job->model_path = absolute;
    }
    return SOWER_OK;
}

static int parse_pipeline(const Ctx *c, Job *job, const yaml_node_t *n)
{
    Field f[] = {{"scheduler", 0, NULL}, {"steps", 0, NULL}, {"eta", 0, NULL},
                 {"batch", 0, NULL},     {"backend", 0, NULL}, {"threads", 0, NULL},
                 {"precision", 0, NULL}, {"karras", 0, NULL},  {"guidance", 0, NULL},
                 {"height", 0, NULL},    {"width", 0, NULL},   {"clip_skip", 0, NULL},
                 {"decode", 0, NULL},    {"guidance_rescale", 0, NULL}, {"sigmas", 0, NULL}};
    SOWER_TRY(get_mapping(c, n, "pipeline", f, 15));
    /* Stable Diffusion settings: checked against the model when it is loaded (sweep/run.c) */
    for (int k = 8; k < 14; k++)
        if (f[k].value && !job->text_mark.line)
            job->text_mark = mark_of(f[k].value);
    if (f[9].value) job->size_mark = mark_of(f[9].value);
    if (f[11].value) job->clip_skip_mark = mark_of(f[11].value);
    if (f[12].value) job->decode_mark = mark_of(f[12].value);
    if (f[8].value)
        SOWER_TRY(get_number(c, f[8].value, "pipeline.guidance", 0.0, 0, 1000.0, &job->guidance));
    if (f[13].value) {
        SOWER_TRY(get_number(c, f[13].value, "pipeline.guidance_rescale", 0.0, 0, 1.0, &job->guidance_rescale));
        job->guidance_rescale_mark = mark_of(f[13].value);
        if (job->guidance_rescale > 0 && !(job->guidance > 1.0)) /* diffusers rescales only guided predictions */
            return fail_at(c, f[13].value, "pipeline.guidance_rescale",
                           "0 with pipeline.guidance <= 1 (no classifier-free guidance to rescale)");
    }
    if ((f[9].value != NULL) != (f[10].value != NULL))
        return fail_at(c, f[9].value ? f[9].value : f[10].value, f[9].value ? "pipeline.height" : "pipeline.width",
                       "height and width together");
    if (f[9].value) {
        SOWER_TRY(get_int(c, f[9].value, "pipeline.height", 8, 16384, &job->height));
        SOWER_TRY(get_int(c, f[10].value, "pipeline.width", 8, 16384, &job->width));
        if (job->height % 8)
            return fail_at(c, f[9].value, "pipeline.height", "a multiple of 8");
        if (job->width % 8)
            return fail_at(c, f[10].value, "pipeline.width", "a multiple of 8");
    }
    if (f[11].value)
        SOWER_TRY(get_int(c, f[11].value, "pipeline.clip_skip", 0, 64, &job->clip_skip));
    if (f[12].value) SOWER_TRY(get_bool(c, f[12].value, "pipeline.decode", &job->decode));
    static const char *const backends[] = {"cpu", "cuda", NULL}, *const precisions[] = PRECISION_NAMES;
    const char *schedulers[SCHEDULER_MAX_KINDS + 1] = {NULL}; /* the registry's names, every one, NULL-terminated */
    for (int k = 0; k < scheduler_kind_count(); k++)
        schedulers[k] = scheduler_kind_name(k);
    int v = 0;
    if (f[0].value) {
        SOWER_TRY(get_enum(c, f[0].value, "pipeline.scheduler", schedulers, &v));
        job->scheduler = v;
        job->scheduler_given = 1;
    }
    if (f[1].value)
        SOWER_TRY(get_int(c, f[1].value, "pipeline.steps", 1, 1000, &job->steps));
    if (f[2].value) {
        SOWER_TRY(get_number(c, f[2].value, "pipeline.eta", 0.0, 0, 1.0, &job->eta));
        job->eta_mark = mark_of(f[2].value);
    }
    if (f[7].value) {
        int karras = 0;
        SOWER_TRY(get_bool(c, f[7].value, "pipeline.karras", &karras));
        job->sigmas = karras ? SIGMAS_KARRAS : SIGMAS_CONFIG;
        job->sigmas_mark = mark_of(f[7].value), job->sigmas_key = "pipeline.karras";
    }
    if (f[14].value) { /* karras: true is sigmas: karras; both given must agree */
        static const char *const names[] = SIGMA_SCHEDULE_NAMES; /* from karras on: what may be asked for */
        SOWER_TRY(get_enum(c, f[14].value, "pipeline.sigmas", names + SIGMAS_KARRAS, &v));
        const SigmaSchedule given = (SigmaSchedule)(SIGMAS_KARRAS + v);
        if (f[7].value && (job->sigmas == SIGMAS_KARRAS) != (given == SIGMAS_KARRAS))
            return fail_at(c, f[14].value, "pipeline.sigmas", job->sigmas == SIGMAS_KARRAS ? "karras with pipeline.karras: true"
                                                                                          : "not karras with pipeline.karras: false");
        job->sigmas = given;
        job->sigmas_mark = mark_of(f[14].value), job->sigmas_key = "pipeline.sigmas";
    }
    /* eta and sigmas against a named scheduler here; against the model's default once it is loaded */
    if (job->scheduler_given) SOWER_TRY(job_check_scheduler_settings(job, ""));
    if (f[3].value)
        SOWER_TRY(get_int(c, f[3].value, "pipeline.batch", 1, 1024, &job->batch));
    if (f[4].value) {
        SOWER_TRY(get_enum(c, f[4].value, "pipeline.backend", backends, &v));
        job->backend = v == 0 ? BACKEND_CPU : BACKEND_CUDA;
    }
    if (f[5].value)
        SOWER_TRY(get_int(c, f[5].value, "pipeline.threads", 1, 1024, &job->threads));
    if (f[6].value) {
        SOWER_TRY(get_enum(c, f[6].value, "pipeline.precision", precisions, &v));
        job->precision = (Precision)v;
        if (job->precision != PRECISION_FP32 && job->backend != BACKEND_CUDA)
            return fail_at(c, f[6].value, "pipeline.precision",
                           "fp32 with backend cpu (tf32, bf16 and fp16 are the cuda backend's tensor-core modes)");
    }
    return SOWER_OK;
}

static int parse_seeds(const Ctx *c, Job *job, const yaml_node_t *n)
{
    Field f[] = {{"ranges", 0, NULL}, {"list", 0, NULL}};
    SOWER_TRY(get_mapping(c, n, "seeds", f, 2));
    if (!f[0].value && !f[1].value)
        return fail_at(c, n, "seeds", "'ranges' or 'list' (or both)");
    if (f[0].value) {
        const yaml_node_t *r = f[0].value;
        if (r->type != YAML_SEQUENCE_NODE || r->data.sequence.items.top == r->data.sequence.items.start ||
            r->data.sequence.items.top - r->data.sequence.items.start > MAX_RANGES)
            return fail_at(c, r, "seeds.ranges", "a list of 1..4096 {start, count} mappings");
        size_t n_items = (size_t)(r->data.sequence.items.top - r->data.sequence.items.start);
        job->ranges = calloc(n_items, sizeof *job->ranges);
        job->range_marks = calloc(n_items, sizeof *job->range_marks);
        if (!job->ranges || !job->range_marks)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        for (yaml_node_item_t *it = r->data.sequence.items.start; it < r->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(c->doc, *it);
            Field g[] = {{"start", 1, NULL}, {"count", 1, NULL}};
            SeedRange *sr = &job->ranges[job->n_ranges];
            SOWER_TRY(get_mapping(c, item, "seeds.ranges[]", g, 2));
            job->range_marks[job->n_ranges] = mark_of(item);
            SOWER_TRY(get_u64(c, g[0].value, "start", 0, UINT64_MAX, &sr->start));
            SOWER_TRY(get_u64(c, g[1].value, "count", 1, JOB_MAX_ROWS, &sr->count));
            if (sr->count - 1 > UINT64_MAX - sr->start)
                return fail_at(c, g[1].value, "count", "a range that ends at or before seed 18446744073709551615");
            if (job->n_rows + sr->count > JOB_MAX_ROWS)
                return fail_at(c, g[1].value, "count", "at most 2^40 rows in all");
            job->n_rows += sr->count;
            job->n_ranges++;
        }
    }
    if (f[1].value) {
        const yaml_node_t *l = f[1].value;
        if (l->type != YAML_SEQUENCE_NODE || l->data.sequence.items.top == l->data.sequence.items.start ||
            l->data.sequence.items.top - l->data.sequence.items.start > MAX_LIST)
            return fail_at(c, l, "seeds.list", "a list of 1..1000000 seeds (see seeds.h: 42, -1, \"0-99\")");
        size_t cap = 0;
        for (yaml_node_item_t *it = l->data.sequence.items.start; it < l->data.sequence.items.top; it++) {
            const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
            uint64_t lo, hi;
            int parsed = item->type == YAML_SCALAR_NODE ? seed_item_parse(text_of(item), item->data.scalar.length, &lo, &hi)
                                                         : -1;
            if (parsed == SEED_REVERSED)
                return fail_at(c, item, "seeds.list[]", "a range \"A-B\" with A <= B");
            if (parsed != 0)
                return fail_at(c, item, "seeds.list[]",
                               "a seed 0..2^64-1, a negative seed -2^63..-1 (as torch takes it) or a range \"A-B\"");
            if (hi - lo >= MAX_LIST || job->n_list + (size_t)(hi - lo) + 1 > MAX_LIST)
                return fail_at(c, item, "seeds.list", "at most 1000000 seeds in the list, ranges counted out");
            size_t need = job->n_list + (size_t)(hi - lo) + 1;
            if (need > cap) { /* items and ranges inside the list, expanded in order */
                cap = need * 2 < MAX_LIST ? need * 2 : MAX_LIST;
                uint64_t *list = realloc(job->list, cap * sizeof *list);
                if (list)
                    job->list = list;
                Mark *marks = realloc(job->list_marks, cap * sizeof *marks);
                if (marks)
                    job->list_marks = marks;
                if (!list || !marks)
                    return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu seeds", cap);
            }
            for (uint64_t seed = lo;; seed++) {
                job->list[job->n_list] = seed;
                job->list_marks[job->n_list++] = mark_of(item);
                if (seed == hi)
                    break;
            }
        }
        if (job->n_rows + job->n_list > JOB_MAX_ROWS)
            return fail_at(c, l, "seeds.list", "at most 2^40 rows in all (ranges and list)");
        job->n_rows += job->n_list;
    }
    return SOWER_OK;
}

/* prompts: a list of {prompt, negative_prompt} mappings (or plain prompts); rows become every (prompt,
 * seed) pair, prompt-major. */
static int parse_prompts(const Ctx *c, Job *job, const yaml_node_t *n)
{
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start ||
        n->data.sequence.items.top - n->data.sequence.items.start > JOB_MAX_PROMPTS)
        return fail_at(c, n, "prompts", "a list of 1..100000 prompts ({prompt: ..., negative_prompt: ...})");
    const size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    job->prompts = calloc(count, sizeof *job->prompts);
    job->negative_prompts = calloc(count, sizeof *job->negative_prompts);
    job->prompt_marks = calloc(count, sizeof *job->prompt_marks);
    if (!job->prompts || !job->negative_prompts || !job->prompt_marks)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (!job->text_mark.line)
        job->text_mark = mark_of(n);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        const char *prompt = NULL, *negative = "";
        if (item->type == YAML_SCALAR_NODE) {
            SOWER_TRY(get_prompt(c, item, "prompts[]", &prompt));
        } else {
            Field g[] = {{"prompt", 1, NULL}, {"negative_prompt", 0, NULL}};
            SOWER_TRY(get_mapping(c, item, "prompts[]", g, 2));
            SOWER_TRY(get_prompt(c, g[0].value, "prompts[].prompt", &prompt));
            if (g[1].value && !is_null(g[1].value) && !(g[1].value->type == YAML_SCALAR_NODE && g[1].value->data.scalar.length == 0))
                SOWER_TRY(get_string(c, g[1].value, "prompts[].negative_prompt", JOB_MAX_PROMPT_CHARS, &negative));
        }
        const size_t k = job->n_prompts;
        job->prompt_marks[k] = mark_of(item);
        job->prompts[k] = strdup(prompt);
        job->negative_prompts[k] = strdup(negative);
        job->n_prompts++; /* counted as made: job_free frees what is there */
        if (!job->prompts[k] || !job->negative_prompts[k])
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    }
    job->n_listed_prompts = job->n_prompts;
    return SOWER_OK;
}

/* prompts_file: a path (one prompt per line, read later: see job_read_prompts_text), or {path,
 * negative_prompt} to give the file's prompts one negative prompt. */
static int parse_prompts_file(const Ctx *c, Job *job, const yaml_node_t *n)
{
    const char *path = NULL, *negative = "";
    job->prompts_file_mark = mark_of(n);
    if (n->type == YAML_MAPPING_NODE) {
        Field f[] = {{"path", 1, NULL}, {"negative_prompt", 0, NULL}};
        SOWER_TRY(get_mapping(c, n, "prompts_file", f, 2));
        SOWER_TRY(get_path(c, f[0].value, "prompts_file.path", &path));
        if (f[1].value && !is_null(f[1].value) && !(f[1].value->type == YAML_SCALAR_NODE && f[1].value->data.scalar.length == 0))
            SOWER_TRY(get_string(c, f[1].value, "prompts_file.negative_prompt", JOB_MAX_PROMPT_CHARS, &negative));
    } else if (n->type == YAML_SCALAR_NODE) {
        SOWER_TRY(get_path(c, n, "prompts_file", &path));
    } else {
        return fail_at(c, n, "prompts_file", "a path (UTF-8, one prompt per line) or {path: ..., negative_prompt: ...}");
    }
    SOWER_TRY(resolve_path(job, path, &job->prompts_file));
    if (!(job->prompts_file_negative = strdup(negative)))
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    if (!job->text_mark.line || job->text_mark.line > job->prompts_file_mark.line)
        job->text_mark = job->prompts_file_mark;
    job->prompts_file_pending = 1;
    return SOWER_OK;
}

static int parse_output(const Ctx *c, Job *job, const yaml_node_t *n)
{
    Field f[] = {{"path", 1, NULL}, {"compression", 0, NULL}, {"chunk_rows", 0, NULL}};
    SOWER_TRY(get_mapping(c, n, "output", f, 3));
    const char *path = NULL;
    SOWER_TRY(get_path(c, f[0].value, "output.path", &path));
    SOWER_TRY(resolve_path(job, path, &job->output_path));
    static const char *const compressions[] = {"none", "gzip", NULL};
    if (f[1].value)
        SOWER_TRY(get_enum(c, f[1].value, "output.compression", compressions, &job->output_gzip));
    if (f[2].value)
        SOWER_TRY(get_int(c, f[2].value, "output.chunk_rows", 1, 65536, &job->chunk_rows));
    return SOWER_OK;
}

static int parse_verify(const Ctx *c, Job *job, const yaml_node_t *n)
{
    Field f[] = {{"count", 0, NULL}, {"fraction", 0, NULL}};
    SOWER_TRY(get_mapping(c, n, "verify", f, 2));
    if ((f[0].value != NULL) == (f[1].value != NULL))
        return fail_at(c, n, "verify", "exactly one of 'count' or 'fraction'");
    if (f[0].value)
        return get_u64(c, f[0].value, "verify.count", 0, 1000000, &job->verify_count);
    job->verify_by_fraction = 1;
    return get_number(c, f[1].value, "verify.fraction", 0.0, 1, 1.0, &job->verify_fraction);
}

/* A Slurm time limit: [DAYS-]HOURS[:MINUTES[:SECONDS]] or MINUTES[:SECONDS] (sbatch --time). */
int slurm_time_valid(const char *s)
{
    const char *p = s, *dash = strchr(s, '-');
    if (dash) {
        if (dash == s)
            return 0;
        for (; p < dash; p++)
            if (!isdigit((unsigned char)*p))
                return 0;
        p = dash + 1;
    }
    int groups = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
        groups++;
        if (*p == ':')
            p++;
        else if (*p)
            return 0;
        else
            break;
    }
    return groups >= 1 && groups <= 3 && p[-1] != ':';
}

int slurm_partition_valid(const char *s)
{
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p) && !(*p == ',' && p != s && p[1] && p[1] != ','))
            return 0;
    return 1;
}

double slurm_time_seconds(const char *s)
{
    if (!slurm_time_valid(s)) return -1;
    double days = 0, group[3] = {0, 0, 0};
    const char *p = s, *dash = strchr(s, '-');
    if (dash) days = strtod(s, NULL), p = dash + 1;
    int groups = 0;
    for (; *p && groups < 3; groups++) {
        char *end;
        group[groups] = strtod(p, &end);
        p = *end == ':' ? end + 1 : end;
    }
    if (dash) /* DAYS-HH[:MM[:SS]] */
        return days * 86400 + group[0] * 3600 + group[1] * 60 + group[2];
    if (groups == 3) return group[0] * 3600 + group[1] * 60 + group[2]; /* HH:MM:SS */
    return group[0] * 60 + group[1];                                   /* MINUTES[:SECONDS] */
}

static int parse_slurm(const Ctx *c, Job *job, const yaml_node_t *n)
{
    Field f[] = {{"tasks", 0, NULL},     {"cpus_per_task", 0, NULL}, {"gpus_per_task", 0, NULL},
                 {"slices", 0, NULL},    {"time", 0, NULL},          {"partition", 0, NULL},
                 {"account", 0, NULL}};
    SOWER_TRY(get_mapping(c, n, "slurm", f, 7));
    SlurmSettings *s = &job->slurm;
    if (f[0].value)
        SOWER_TRY(get_int(c, f[0].value, "slurm.tasks", 1, 100000, &s->tasks));
    if (f[1].value)
        SOWER_TRY(get_int(c, f[1].value, "slurm.cpus_per_task", 1, 4096, &s->cpus_per_task));
    if (f[2].value)
        SOWER_TRY(get_int(c, f[2].value, "slurm.gpus_per_task", 0, 64, &s->gpus_per_task));
    if (f[3].value)
        SOWER_TRY(get_int(c, f[3].value, "slurm.slices", 0, 100000, &s->slices));
    const char *text = NULL;
    if (f[4].value) {
        if (get_string(c, f[4].value, "slurm.time", sizeof s->time - 1, &text) != SOWER_OK) {
            sower_error_clear(); /* said with the form it takes: 60 unquoted is a YAML number, not a limit */
            return fail_at(c, f[4].value, "slurm.time",
                           "a Slurm time limit as a quoted string: \"60\" (minutes), \"01:00:00\" or \"1-00:00:00\"");
        }
        if (!slurm_time_valid(text))
            return fail_at(c, f[4].value, "slurm.time", "a Slurm time limit: MINUTES, HH:MM:SS or DAYS-HH:MM:SS");
        snprintf(s->time, sizeof s->time, "%s", text);
    }
    char *const dst[2] = {s->partition, s->account};
    for (int i = 0; i < 2; i++) {
        if (!f[5 + i].value)
            continue;
        char key[32];
        snprintf(key, sizeof key, "slurm.%s", f[5 + i].name);
        SOWER_TRY(get_string(c, f[5 + i].value, key, 64, &text));
        if (i == 0 && !slurm_partition_valid(text)) /* partitions: a list "gpu,cpu" as sbatch --partition takes it */
            return fail_at(c, f[5 + i].value, key,
                           "a Slurm partition, or a list of them: letters, digits, '.', '_' and '-', names separated "
                           "by ','");
        for (const char *p = text; i == 1 && *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
                return fail_at(c, f[5 + i].value, key, "a Slurm name: letters, digits, '.', '_' and '-'");
        snprintf(dst[i], 65, "%s", text);
    }
    return SOWER_OK;
}

/* ---- seeds: duplicates (errors) ---- */

/* Sorting keys that remember where each seed was written. */
typedef struct {
    uint64_t lo, hi; /* seeds lo..hi */
    Mark mark;
} Span;

static int cmp_span(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : (x->mark.line > y->mark.line) - (x->mark.line < y->mark.line);
}


/* A libyaml error at its place: reader errors (bad UTF-8, control characters) give a byte offset, the
 * others a mark. */
static int yaml_error(const Job *job, const char *path, const yaml_parser_t *parser, const char *where)
{
    size_t line = parser->problem_mark.line + 1, column = parser->problem_mark.column + 1;
    if (parser->error == YAML_READER_ERROR) {
        line = 1, column = 1;
        for (size_t k = 0; k < parser->problem_offset && k < job->text_bytes; k++)
            job->text[k] == '\n' ? (line++, column = 1) : column++;
    }
    return SOWER_FAIL(SOWER_EMANIFEST, "%s:%zu:%zu: expected valid YAML%s, found an error: %s%s%s", path, line,
                      column, where, parser->problem ? parser->problem : "unknown problem", parser->context ? " " : "",
                      parser->context ? parser->context : "");
}

/* A manifest nests a few levels; libyaml's scanner takes quadratic time in the depth (a 2 MB file of
 * brackets: minutes), so the events are walked first and the walk stops at MAX_NESTING. The walk also
 * refuses explicit tags (`steps: !!str 2`): the loaded document no longer tells them from plain values,
 * so sower would read 2 where YAML (and the schema) has the string "2"; a manifest has no use for them. */
enum { MAX_NESTING = 32 };
static const yaml_char_t *event_tag(const yaml_event_t *e)
{
    return e->type == YAML_SCALAR_EVENT           ? e->data.scalar.tag
           : e->type == YAML_SEQUENCE_START_EVENT ? e->data.sequence_start.tag
           : e->type == YAML_MAPPING_START_EVENT  ? e->data.mapping_start.tag
                                                  : NULL;
}

static int check_nesting(const Job *job, const char *path)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return SOWER_FAIL(SOWER_ENOMEM, "cannot start the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)job->text, job->text_bytes);
    int depth = 0, status = SOWER_OK, done = 0;
    while (!done && status == SOWER_OK) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event)) break; /* the load reports it, with its place */
        const yaml_char_t *tag = event_tag(&event);
        if (tag)
            status = SOWER_FAIL(SOWER_EMANIFEST, "%s:%zu:%zu: expected a value without a YAML tag, found the tag '%.60s'",
                                path, event.start_mark.line + 1, event.start_mark.column + 1, (const char *)tag);
        else if ((event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT) &&
                 ++depth > MAX_NESTING)
            status = SOWER_FAIL(SOWER_EMANIFEST, "%s:%zu:%zu: expected at most %d nested collections, found more",
                                path, event.start_mark.line + 1, event.start_mark.column + 1, MAX_NESTING);
        else if (event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT)
            depth--;
        done = event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    return status;
}

/* Every seed must appear once: sort all ranges and list entries by first seed; neighbours must not
 * overlap. The later-written of an overlapping pair is reported, at its position. */
static int check_duplicates(const Job *job)
{
    size_t n = (size_t)job->n_ranges + job->n_list;
    Span *spans = malloc(sizeof *spans * (n + 1));
    if (!spans)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    for (int i = 0; i < job->n_ranges; i++)
        spans[i] = (Span){job->ranges[i].start, job->ranges[i].start + (job->ranges[i].count - 1), job->range_marks[i]};
    for (size_t i = 0; i < job->n_list; i++)
        spans[job->n_ranges + i] = (Span){job->list[i], job->list[i], job->list_marks[i]};
    qsort(spans, n, sizeof *spans, cmp_span);
    int status = SOWER_OK;
    for (size_t i = 1; i < n; i++) {
        if (spans[i].lo > spans[i - 1].hi)
            continue;
        const Span *later = spans[i].mark.line > spans[i - 1].mark.line ||
                                    (spans[i].mark.line == spans[i - 1].mark.line &&
                                     spans[i].mark.column > spans[i - 1].mark.column)
                                ? &spans[i]
                                : &spans[i - 1];
        const Span *earlier = later == &spans[i] ? &spans[i - 1] : &spans[i];
        status = SOWER_FAIL(SOWER_EMANIFEST,
                            "%s:%u:%u: seeds: expected every seed once, found seed %llu again (first at line %u)",
                            job->manifest_path, later->mark.line, later->mark.column,
                            (unsigned long long)spans[i].lo, earlier->mark.line);
        break;
    }
    free(spans);
    return status;
}

static void set_defaults(Job *job)
{
    job->scheduler = SCHED_DDIM; /* until job_resolve_scheduler: a Stable Diffusion folder may have its own */
    job->steps = 50;
    job->eta = 0.0;
    job->batch = 8;
    job->backend = BACKEND_CPU;
    job->generator = RNG_KERNEL_TORCH_CPU;
    job->chunk_rows = 64;
    job->verify_count = 64;
    job->slurm.tasks = 1;
    job->slurm.gpus_per_task = -1;
    job->guidance = 7.5; /* StableDiffusionPipeline's default guidance_scale */
}

static int parse_document(Job *job, yaml_document_t *doc)
{
    Ctx c = {job, doc};
    yaml_node_t *root = yaml_document_get_root_node(doc);
    Field f[] = {{"sower", 1, NULL},  {"name", 1, NULL},      {"model", 1, NULL},  {"pipeline", 1, NULL},
                 {"generator", 0, NULL}, {"seeds", 1, NULL}, {"output", 1, NULL}, {"verify", 0, NULL},
                 {"slurm", 0, NULL},  {"prompts", 0, NULL},   {"prompts_file", 0, NULL}};
    if (!root)
        return SOWER_FAIL(SOWER_EMANIFEST, "%s:1:1: expected a job manifest (a YAML mapping), found an empty document",
                          job->manifest_path);
    SOWER_TRY(get_mapping(&c, root, NULL, f, 11));
    uint64_t version;
    SOWER_TRY(get_u64(&c, f[0].value, "sower", 1, 1, &version));
    const char *name = NULL;
    SOWER_TRY(get_string(&c, f[1].value, "name", 128, &name));
    int ok = isalnum((unsigned char)name[0]);
    for (const char *p = name; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-';
    if (!ok)
        return fail_at(&c, f[1].value, "name", "letters, digits, '.', '_' and '-', starting with a letter or digit");
    snprintf(job->name, sizeof job->name, "%s", name);
    SOWER_TRY(parse_model(&c, job, f[2].value));
    SOWER_TRY(parse_pipeline(&c, job, f[3].value));
    if (f[4].value) {
        static const char *const generators[] = {"torch-cpu", "torch-cpu-scalar", "torch-cuda", NULL};
        int g = 0;
        SOWER_TRY(get_enum(&c, f[4].value, "generator", generators, &g));
        job->generator = (RngKernel)g;
        if (job->generator == RNG_KERNEL_TORCH_CUDA && job->backend != BACKEND_CUDA)
            return fail_at(&c, f[4].value, "generator",
                           "torch-cpu or torch-cpu-scalar with backend cpu (torch-cuda's noise is made on the GPU: "
                           "pipeline.backend cuda)");
    }
    SOWER_TRY(parse_seeds(&c, job, f[5].value));
    job->n_seeds = job->n_rows;
    if (f[9].value) {
        SOWER_TRY(parse_prompts(&c, job, f[9].value));
        if (job->n_seeds > JOB_MAX_ROWS / job->n_prompts)
            return fail_at(&c, f[9].value, "prompts", "at most 2^40 rows (prompts x seeds)");
        job->n_rows = job->n_seeds * job->n_prompts;
    }
    if (f[10].value) { /* the rows are counted once the file's prompts are in */
        SOWER_TRY(parse_prompts_file(&c, job, f[10].value));
        job->n_rows = 0;
    }
    SOWER_TRY(parse_output(&c, job, f[6].value));
    if (f[7].value)
        SOWER_TRY(parse_verify(&c, job, f[7].value));
    if (f[8].value)
        SOWER_TRY(parse_slurm(&c, job, f[8].value));
    SOWER_TRY(check_duplicates(job));
    return SOWER_OK;
}

int manifest_load(Job *job, const char *path)
{
    char *bytes = NULL;
    size_t n = 0;
    memset(job, 0, sizeof *job);
    SOWER_TRY(config_file_read(path, "job manifest", MANIFEST_MAX_BYTES, SOWER_EMANIFEST, &bytes, &n));
    int status = manifest_load_text(job, path, bytes, n);
    free(bytes);
    SOWER_TRY(status);
    if (job->prompts_file_pending) SOWER_TRY(job_load_prompts_file(job));
    return SOWER_OK;
}

int manifest_load_text(Job *job, const char *path, const char *text, size_t bytes)
{
    memset(job, 0, sizeof *job);
    set_defaults(job);
    job->manifest_path = strdup(path);
    job->text = malloc(bytes + 1);
    if (!job->manifest_path || !job->text)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    memcpy(job->text, text, bytes);
    job->text_bytes = bytes;
    job->text[bytes] = '\0';
    SOWER_TRY(digest_buffer(job->text, job->text_bytes, job->text_sha256));

    SOWER_TRY(check_nesting(job, path));
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return SOWER_FAIL(SOWER_ENOMEM, "cannot start the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)job->text, job->text_bytes);
    int status = SOWER_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        status = yaml_error(job, path, &parser, "");
        yaml_parser_delete(&parser);
        return status;
    }
    /* A second document in the stream is not part of a job, nor is text that does not parse after it. */
    yaml_document_t extra;
    if (yaml_parser_load(&parser, &extra)) {
        if (yaml_document_get_root_node(&extra))
            status = SOWER_FAIL(SOWER_EMANIFEST, "%s:%zu:1: expected one YAML document, found another",
                                path, yaml_document_get_root_node(&extra)->start_mark.line + 1);
        yaml_document_delete(&extra);
    } else {
        status = yaml_error(job, path, &parser, " after the job's document");
    }
    if (status == SOWER_OK)
        status = parse_document(job, &doc);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    SOWER_TRY(status);
    return SOWER_OK;
}
