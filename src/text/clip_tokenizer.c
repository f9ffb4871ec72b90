/* clip_tokenizer.c: see clip_tokenizer.h. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "clip_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "clip_text.h"
#include "config_file.h"
#include "json_keys.h"
#include "strmap.h"
#include "utf8.h"

enum {
    CLIP_MAX_MERGES = 49152 - 256 - 2, /* transformers reads merges.txt lines 1..48894 only */
    CLIP_MAX_ADDED = 64,
    CLIP_FILE_MAX_BYTES = 64 << 20,
};

typedef struct {
    char *content; /* UTF-8, NUL-terminated */
    size_t len;
    int32_t id;
    int lstrip, rstrip; /* eat the whitespace on that side of the token */
} AddedToken;

struct ClipTokenizer {
    StrMap vocab;          /* token (byte symbols, UTF-8) -> id */
    StrMap ranks;          /* "first second" -> merge rank */
    char **id_to_token;    /* (id_count,) NULL where the vocabulary has no token */
    size_t id_count;
    char byte_symbol[256][3]; /* GPT-2's bytes_to_unicode, each symbol as UTF-8 (1 or 2 bytes) */
    unsigned char byte_symbol_len[256];
    AddedToken added[CLIP_MAX_ADDED]; /* special tokens, then added_tokens_decoder's */
    int n_added;
    int32_t bos, eos, unk, pad;
    int32_t unk_piece; /* a BPE piece that is in no table: vocab.json's id of the unknown token's text */
    int max_length;
};

/* ---- byte symbols and BPE -------------------------------------------------------------------- */

static void init_byte_symbols(ClipTokenizer *t)
{
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : next++;
        t->byte_symbol_len[b] = (unsigned char)utf8proc_encode_char(cp, (utf8proc_uint8_t *)t->byte_symbol[b]);
    }
}

typedef struct {
    const ClipTokenizer *t;
    int32_t *ids; /* (cap,) content ids so far */
    size_t n, cap;
} IdList;

static int push_id(IdList *l, int32_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 128;
        int32_t *grown = realloc(l->ids, cap * sizeof *grown);
        if (!grown)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu token ids", cap);
        l->ids = grown, l->cap = cap;
    }
    l->ids[l->n++] = id;
    return SOWER_OK;
}

/* convert_tokens_to_ids of a BPE piece: an added token's id first, then vocab.json's, else vocab.json's id of
 * the unknown token's text (not the added token's: _convert_token_to_id reads the encoder). */
static int32_t token_id(const ClipTokenizer *t, const char *s, size_t len)
{
    for (int k = 0; k < t->n_added; k++)
        if (t->added[k].len == len && memcmp(t->added[k].content, s, len) == 0) return t->added[k].id;
    int32_t id;
    return strmap_get(&t->vocab, s, len, &id) ? id : t->unk_piece;
}

/* The rank of the merge (a, b), or -1. key: scratch of at least la + lb + 2 bytes. */
static int32_t pair_rank(const ClipTokenizer *t, const char *a, size_t la, const char *b, size_t lb, char *key)
{
    memcpy(key, a, la);
    key[la] = ' ';
    memcpy(key + la + 1, b, lb);
    int32_t rank;
    return strmap_get(&t->ranks, key, la + 1 + lb, &rank) ? rank : -1;
}

/* CLIPTokenizer.bpe on one regex match. The match's byte symbols sit side by side in `sym` (with
 * "</w>" after the last), so every symbol, merged or not, is a span [start[i], start[i+1]). */
static int bpe_word(IdList *out, const char *word, size_t len)
{
    const ClipTokenizer *t = out->t;
    if ((len == 15 && memcmp(word, "<|startoftext|>", 15) == 0) || (len == 13 && memcmp(word, "<|endoftext|>", 13) == 0))
        return push_id(out, token_id(t, word, len)); /* bpe()'s cache holds these two as they are */
    size_t sym_bytes = 0, n = len;
    char *sym = malloc(2 * len + 5), *key = malloc(4 * len + 16);
    size_t *start = malloc((len + 1) * sizeof *start);
    if (!sym || !key || !start) {
        free(sym), free(key), free(start);
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a %zu-byte word", len);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)word[i];
        start[i] = sym_bytes;
        memcpy(sym + sym_bytes, t->byte_symbol[b], t->byte_symbol_len[b]);
        sym_bytes += t->byte_symbol_len[b];
    }
    memcpy(sym + sym_bytes, "</w>", 4);
    sym_bytes += 4;
    start[n] = sym_bytes;
    /* Merge the lowest-ranked adjacent pair, every occurrence left to right, until none is known. */
    while (n > 1) {
        int32_t best = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t r = pair_rank(t, sym + start[i], start[i + 1] - start[i], sym + start[i + 1],
                                  start[i + 2] - start[i + 1], key);
            if (r >= 0 && (best < 0 || r < best))
                best = r;
        }
        if (best < 0)
            break;
        size_t m = 0;
        for (size_t i = 0; i < n;) {
            start[m++] = start[i];
            if (i + 1 < n && pair_rank(t, sym + start[i], start[i + 1] - start[i], sym + start[i + 1],
                                       start[i + 2] - start[i + 1], key) == best)
                i += 2;
            else
                i += 1;
        }
        start[m] = sym_bytes;
        n = m;
    }
    int status = SOWER_OK;
    for (size_t i = 0; i < n && status == SOWER_OK; i++)
        status = push_id(out, token_id(t, sym + start[i], start[i + 1] - start[i]));
    free(sym), free(key), free(start);
    return status;
}

static int on_word(void *ctx, const char *word, size_t len) { return bpe_word(ctx, word, len); }

/* ---- the prompt: added tokens cut out, the pieces between them encoded ------------------------ */

/* The added token that starts at text[i], the longest when several do; NULL when none. */
static const AddedToken *added_at(const ClipTokenizer *t, const char *text, size_t len, size_t i)
{
    const AddedToken *best = NULL;
    for (int k = 0; k < t->n_added; k++) {
        const AddedToken *a = &t->added[k];
        if (a->len <= len - i && memcmp(text + i, a->content, a->len) == 0 && (!best || a->len > best->len))
            best = a;
    }
    return best;
}

/* Python's str.lstrip() / rstrip() on a UTF-8 span: its whitespace at the start / end. */
static size_t leading_space(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0 || !clip_py_isspace(cp))
            break;
        i += (size_t)k;
    }
    return i;
}

static size_t trailing_space(const char *s, size_t len)
{
    size_t end = len;
    while (end > 0) {
        size_t k = end - 1;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        int32_t cp;
        if (utf8proc_iterate((const utf8proc_uint8_t *)s + k, (utf8proc_ssize_t)(end - k), &cp) <= 0 ||
            !clip_py_isspace(cp))
            break;
        end = k;
    }
    return len - end;
}

/* The content ids of prompt: PreTrainedTokenizer.tokenize, then the vocabulary. */
static int encode(const ClipTokenizer *t, const char *prompt, size_t len, IdList *out)
{
    size_t bad;
    if (!utf8_valid(prompt, len, &bad))
        return SOWER_FAIL(SOWER_EINPUT, "invalid UTF-8 at byte %zu", bad);
    size_t piece = 0, i = 0;
    const AddedToken *prev = NULL; /* the added token before the current piece */
    while (i <= len) {
        const AddedToken *a = i < len ? added_at(t, prompt, len, i) : NULL;
        if (!a && i < len) {
            i++;
            continue;
        }
        /* the text piece [piece, i), stripped where its neighbouring added tokens eat whitespace */
        size_t from = piece, to = i;
        if (prev && prev->rstrip)
            from += leading_space(prompt + from, to - from);
        if (a && a->lstrip)
            to -= trailing_space(prompt + from, to - from);
        if (to > from)
            SOWER_TRY(clip_pretokenize(prompt + from, to - from, "prompt", on_word, out));
        if (!a)
            break;
        SOWER_TRY(push_id(out, a->id));
        i += a->len;
        piece = i;
        prev = a;
    }
    return SOWER_OK;
}

int clip_tokenize(const ClipTokenizer *t, const char *prompt, size_t len, int32_t *ids, size_t *untruncated)
{
    IdList content = {t, NULL, 0, 0};
    int status = encode(t, prompt, len, &content);
    if (status == SOWER_OK) {
        const size_t keep = content.n < (size_t)t->max_length - 2 ? content.n : (size_t)t->max_length - 2;
        ids[0] = t->bos;
        if (keep) /* content.ids is NULL for an empty prompt */
            memcpy(ids + 1, content.ids, keep * sizeof *ids);
        ids[1 + keep] = t->eos;
        for (size_t k = keep + 2; k < (size_t)t->max_length; k++)
            ids[k] = t->pad;
        *untruncated = content.n + 2;
    }
    free(content.ids);
    return status;
}

int clip_tokenizer_dropped_text(const ClipTokenizer *t, const char *prompt, size_t len, char **text)
{
    IdList content = {t, NULL, 0, 0};
    int status;
    *text = NULL;
    SOWER_TRY_GOTO(encode(t, prompt, len, &content), status, done);
    size_t first = (size_t)t->max_length - 2, bytes = 1;
    for (size_t k = first; k < content.n; k++)
        bytes += ((size_t)content.ids[k] < t->id_count && t->id_to_token[content.ids[k]]
                      ? strlen(t->id_to_token[content.ids[k]])
                      : 0) + 1;
    char *s = calloc(bytes, 1);
    if (!s)
        SOWER_TRY_GOTO(SOWER_FAIL(SOWER_ENOMEM, "out of memory"), status, done);
    size_t n = 0;
    for (size_t k = first; k < content.n; k++) { /* tokens to bytes: each symbol back to its byte */
        const char *tok = (size_t)content.ids[k] < t->id_count ? t->id_to_token[content.ids[k]] : NULL;
        for (size_t p = 0; tok && tok[p];) {
            if (strncmp(tok + p, "</w>", 4) == 0) {
                s[n++] = ' ', p += 4;
                continue;
            }
            int b = 0;
            while (b < 256 && strncmp(tok + p, t->byte_symbol[b], t->byte_symbol_len[b]) != 0)
                b++;
            if (b == 256) { /* an added token's own text */
                s[n++] = tok[p++];
                continue;
            }
            s[n++] = (char)b, p += t->byte_symbol_len[b];
        }
    }
    while (n > 0 && s[n - 1] == ' ')
        n--;
    s[n] = '\0';
    *text = s;
    status = SOWER_OK;
done:
    free(content.ids);
    return status;
}

/* ---- loading ---------------------------------------------------------------------------------- */

/* dir/name into a new NUL-terminated buffer (config_file.h's wording); an optional file that does
 * not exist gives NULL. */
static int read_file(const char *dir, const char *name, int required, char **text, char *path, size_t path_size)
{
    snprintf(path, path_size, "%s/%s", dir, name);
    *text = NULL;
    struct stat st;
    if (!required && stat(path, &st) != 0)
        return SOWER_OK;
    size_t bytes = 0;
    SOWER_TRY(config_file_read(path, "tokenizer file", CLIP_FILE_MAX_BYTES, SOWER_EINPUT, text, &bytes));
    if (strlen(*text) != bytes) {
        free(*text);
        *text = NULL;
        return SOWER_FAIL(SOWER_EINPUT, "%s: a NUL byte in a text file", path);
    }
    const size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, ".json") == 0 && json_has_nul_escape(*text, bytes)) { /* "a</w>\u0000" would be read as "a</w>", overwriting its id */
        free(*text);
        *text = NULL;
        return SOWER_FAIL(SOWER_EINPUT, "%s: a string holds \\u0000 (a NUL): no token or key has one", path);
    }
    return SOWER_OK;
}

static int load_vocab(ClipTokenizer *t, const char *dir)
{
    char path[4200], *text;
    SOWER_TRY(read_file(dir, "vocab.json", 1, &text, path, sizeof path));
    int ran_out;
    cJSON *root = json_parse(text, strlen(text), NULL, &ran_out);
    free(text);
    int status = SOWER_OK;
    if (ran_out) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: expected a JSON object of token -> id", path);
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    if (count == 0) { /* every word would become the unknown token: the prompt silently lost */
        status = SOWER_FAIL(SOWER_EINPUT, "%s: no tokens (an empty vocabulary)", path);
        goto done;
    }
    SOWER_TRY_GOTO(strmap_init(&t->vocab, (size_t)count), status, done);
    int32_t max_id = -1;
    for (cJSON *e = root->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e7 || e->valuedouble != (int32_t)e->valuedouble) {
            status = SOWER_FAIL(SOWER_EINPUT, "%s: key '%s': expected an id in 0..10000000", path, e->string);
            goto done;
        }
        SOWER_TRY_GOTO(strmap_put(&t->vocab, e->string, strlen(e->string), (int32_t)e->valuedouble, NULL), status, done);
        if ((int32_t)e->valuedouble > max_id)
            max_id = (int32_t)e->valuedouble;
    }
    t->id_count = (size_t)max_id + 1;
    t->id_to_token = calloc(t->id_count ? t->id_count : 1, sizeof *t->id_to_token);
    if (!t->id_to_token) {
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu tokens", t->id_count);
        goto done;
    }
    for (size_t k = 0; k < t->vocab.capacity; k++) /* the map owns the strings */
        if (t->vocab.keys[k])
            t->id_to_token[t->vocab.values[k]] = t->vocab.keys[k];
done:
    cJSON_Delete(root);
    return status;
}

/* The bytes of the Python whitespace character (str.isspace()) at p, 0 when there is none (or p ends). */
static size_t space_at(const char *p)
{
    utf8proc_int32_t cp = -1;
    const utf8proc_ssize_t n = *p ? utf8proc_iterate((const utf8proc_uint8_t *)p, -1, &cp) : 0;
    return n > 0 && clip_py_isspace(cp) ? (size_t)n : 0;
}

/* merges_handle.read().strip().split("\n")[1:48895], each line .split() into a pair; open() in text mode reads
 * "\r\n" and a lone "\r" as "\n" too (universal newlines). */
static int load_merges(ClipTokenizer *t, const char *dir)
{
    char path[4200], *text;
    SOWER_TRY(read_file(dir, "merges.txt", 1, &text, path, sizeof path));
    size_t len = strlen(text), lead = 0;
    for (size_t n; lead < len && (n = space_at(text + lead)) > 0;)
        lead += n;
    int status = strmap_init(&t->ranks, CLIP_MAX_MERGES);
    char *line = text + lead, *key = malloc(len + 2);
    if (!key && status == SOWER_OK)
        status = SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    for (int32_t index = 0; status == SOWER_OK && line && *line && index <= CLIP_MAX_MERGES; index++) {
        char *next = strpbrk(line, "\r\n");
        if (next) {
            const int crlf = next[0] == '\r' && next[1] == '\n';
            *next++ = '\0';
            next += crlf;
        }
        if (index > 0) { /* line 0 is "#version: ..." */
            /* the fields of str.split(): runs of characters that are not Python whitespace */
            char *field[3];
            int nf = 0;
            for (char *p = line; *p && nf < 3;) {
                for (size_t n; (n = space_at(p)) > 0;)
                    p += n;
                if (!*p)
                    break;
                field[nf++] = p;
                size_t n = 0;
                while (*p && (n = space_at(p)) == 0)
                    p++;
                if (*p) {
                    *p = '\0';
                    p += n;
                }
            }
            if (nf == 2) { /* other lines are tuples that never equal a pair, as in transformers */
                size_t la = strlen(field[0]), lb = strlen(field[1]);
                memcpy(key, field[0], la), key[la] = ' ', memcpy(key + la + 1, field[1], lb);
                status = strmap_put(&t->ranks, key, la + 1 + lb, index - 1, NULL); /* a repeat keeps the last rank */
            }
        }
        line = next;
    }
    free(key);
    free(text);
    return status;
}

/* A special token's text from a config value: a string, or an AddedToken object ({"content": ...}). */
static const cJSON *token_content(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v;
    const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : NULL;
    return cJSON_IsString(c) ? c : NULL;
}

static int flag(const cJSON *obj, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key)); }

/* Adds (or updates) the no-split token `content` with id `id`. */
static int add_token(ClipTokenizer *t, const char *path, const char *content, int32_t id, const cJSON *props)
{
    if (props && flag(props, "single_word"))
        return SOWER_FAIL(SOWER_EINPUT, "%s: added token '%s': single_word tokens are not supported", path, content);
    AddedToken *a = NULL;
    for (int k = 0; k < t->n_added && !a; k++)
        if (strcmp(t->added[k].content, content) == 0)
            a = &t->added[k];
    if (!a) {
        if (t->n_added == CLIP_MAX_ADDED)
            return SOWER_FAIL(SOWER_EINPUT, "%s: more than %d added tokens", path, CLIP_MAX_ADDED);
        if (!*content)
            return SOWER_FAIL(SOWER_EINPUT, "%s: an empty added token", path);
        a = &t->added[t->n_added++];
        if (!(a->content = strdup(content)))
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
        a->len = strlen(content);
    }
    a->id = id;
    if (props)
        a->lstrip = flag(props, "lstrip"), a->rstrip = flag(props, "rstrip");
    return SOWER_OK;
}

/* The id of special token `text`: added_tokens_decoder's, else the vocabulary's. */
static int special_id(ClipTokenizer *t, const char *path, const char *key, const char *text, int32_t *id)
{
    for (int k = 0; k < t->n_added; k++)
        if (strcmp(t->added[k].content, text) == 0) {
            *id = t->added[k].id;
            return SOWER_OK;
        }
    if (strmap_get(&t->vocab, text, strlen(text), id))
        return SOWER_OK;
    return SOWER_FAIL(SOWER_EINPUT, "%s: %s '%s' is neither in vocab.json nor in added_tokens_decoder", path, key, text);
}

static int load_config(ClipTokenizer *t, const char *dir)
{
    static const char *const keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    const char *defaults[4] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    char path[4200], map_path[4200], added_path[4200], *text = NULL, *map_text = NULL, *added_text = NULL;
    cJSON *cfg = NULL, *map = NULL, *added = NULL;
    int status = read_file(dir, "tokenizer_config.json", 1, &text, path, sizeof path);
    if (status != SOWER_OK)
        goto done;
    status = json_parse_config(text, strlen(text), path, SOWER_EINPUT, &cfg);
    if (status != SOWER_OK)
        goto done;
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    /* transformers (4.34 and later) writes added_tokens_decoder, and then reads neither special_tokens_map.json
     * nor added_tokens.json; a folder without it (SD 1.5's, say) is read the legacy way: the map overrides the
     * config's special tokens and added_tokens.json adds tokens. */
    if (!decoder) {
        status = read_file(dir, "special_tokens_map.json", 0, &map_text, map_path, sizeof map_path);
        if (status == SOWER_OK) status = read_file(dir, "added_tokens.json", 0, &added_text, added_path, sizeof added_path);
        if (status != SOWER_OK) goto done;
        if (map_text) status = json_parse_config(map_text, strlen(map_text), map_path, SOWER_EINPUT, &map);
        if (status == SOWER_OK && added_text)
            status = json_parse_config(added_text, strlen(added_text), added_path, SOWER_EINPUT, &added);
        if (status != SOWER_OK) goto done;
    } else if (!cJSON_IsObject(decoder)) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: key 'added_tokens_decoder': expected an object of id -> {\"content\": ...}",
                            path);
        goto done;
    }
    const cJSON *max_len = cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length");
    if (!cJSON_IsNumber(max_len) || max_len->valuedouble < 2 || max_len->valuedouble > 4096 ||
        max_len->valuedouble != (int)max_len->valuedouble) {
        status = SOWER_FAIL(SOWER_EINPUT, "%s: key 'model_max_length': expected an integer in 2..4096", path);
        goto done;
    }
    t->max_length = (int)max_len->valuedouble;
    for (const cJSON *e = decoder ? decoder->child : NULL; e; e = e->next) {
        char *end;
        long id = strtol(e->string, &end, 10);
        const cJSON *content = cJSON_IsObject(e) ? token_content(e) : NULL; /* transformers raises on a bare string */
        if (*end || id < 0 || id > 10000000 || !content) {
            status = SOWER_FAIL(SOWER_EINPUT, "%s: added_tokens_decoder key '%s': expected an id and {\"content\": ...}",
                                path, e->string);
            goto done;
        }
        SOWER_TRY_GOTO(add_token(t, path, content->valuestring, (int32_t)id, e), status, done);
    }
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) { /* legacy {"token": id}: no stripping */
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 10000000 || e->valuedouble != (int32_t)e->valuedouble) {
            status = SOWER_FAIL(SOWER_EINPUT, "%s: key '%s': expected an id in 0..10000000", added_path, e->string);
            goto done;
        }
        SOWER_TRY_GOTO(add_token(t, added_path, e->string, (int32_t)e->valuedouble, NULL), status, done);
    }
    int32_t *ids[4] = {&t->bos, &t->eos, &t->unk, &t->pad};
    for (int k = 0; k < 4; k++) { /* legacy: special_tokens_map.json overrides tokenizer_config.json */
        const cJSON *v = map ? cJSON_GetObjectItemCaseSensitive(map, keys[k]) : NULL;
        const char *from = map_path;
        if (!v)
            v = cJSON_GetObjectItemCaseSensitive(cfg, keys[k]), from = path;
        const cJSON *content = v ? token_content(v) : NULL;
        if (v && !content) {
            status = SOWER_FAIL(SOWER_EINPUT, "%s: key '%s': expected a string or {\"content\": ...}", from, keys[k]);
            goto done;
        }
        const char *tok = content ? content->valuestring : defaults[k];
        int32_t id;
        SOWER_TRY_GOTO(special_id(t, from, keys[k], tok, &id), status, done);
        *ids[k] = id;
        if (ids[k] == &t->unk && !strmap_get(&t->vocab, tok, strlen(tok), &t->unk_piece)) t->unk_piece = id;
        /* every special token is an added token too (a plain string: no stripping) */
        SOWER_TRY_GOTO(add_token(t, from, tok, id, cJSON_IsObject(v) ? v : NULL), status, done);
    }
done:
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    cJSON_Delete(added);
    free(text);
    free(map_text);
    free(added_text);
    return status;
}

int clip_tokenizer_load(ClipTokenizer **out, const char *dir)
{
    *out = NULL;
    ClipTokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory");
    init_byte_symbols(t);
    int status = load_vocab(t, dir);
    if (status == SOWER_OK)
        status = load_merges(t, dir);
    if (status == SOWER_OK)
        status = load_config(t, dir);
    if (status != SOWER_OK) {
        clip_tokenizer_free(t);
        return status;
    }
    *out = t;
    return SOWER_OK;
}

void clip_tokenizer_free(ClipTokenizer *t)
{
    if (!t)
        return;
    strmap_free(&t->vocab);
    strmap_free(&t->ranks);
    free(t->id_to_token);
    for (int k = 0; k < t->n_added; k++)
        free(t->added[k].content);
    free(t);
}

int clip_tokenizer_max_length(const ClipTokenizer *t) { return t->max_length; }

int32_t clip_tokenizer_max_id(const ClipTokenizer *t, const char **token)
{
    int32_t max = (int32_t)t->id_count - 1; /* vocab.json's largest */
    *token = max >= 0 ? t->id_to_token[max] : "";
    for (int k = 0; k < t->n_added; k++)
        if (t->added[k].id > max) max = t->added[k].id, *token = t->added[k].content;
    return max;
}

int32_t clip_tokenizer_pad_id(const ClipTokenizer *t) { return t->pad; }

void clip_tokenizer_special_ids(const ClipTokenizer *t, int32_t *bos, int32_t *eos, int32_t *pad)
{
    *bos = t->bos, *eos = t->eos, *pad = t->pad;
}
