/* clip_text.c: see clip_text.h. Text lives as UTF-32 code points between the steps. */
#include "clip_text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct {
    int32_t *cp; /* (n,) code points */
    size_t n, cap;
} Codepoints;

static int push(Codepoints *c, int32_t cp)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        int32_t *grown = realloc(c->cp, cap * sizeof *grown);
        if (!grown)
            return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu code points", cap);
        c->cp = grown, c->cap = cap;
    }
    c->cp[c->n++] = cp;
    return SOWER_OK;
}

static int decode(const char *text, size_t len, const char *what, Codepoints *out)
{
    size_t i = 0;
    while (i < len) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0)
            return SOWER_FAIL(SOWER_EINPUT, "%s: invalid UTF-8 at byte %zu", what, i);
        SOWER_TRY(push(out, cp));
        i += (size_t)k;
    }
    return SOWER_OK;
}

int clip_py_isspace(int32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static utf8proc_category_t category(int32_t cp) { return utf8proc_category(cp); }

static int is_letter(int32_t cp)
{
    utf8proc_category_t c = category(cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
           c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}

static int is_number(int32_t cp)
{
    utf8proc_category_t c = category(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* BasicTokenizer._is_control: category C*, except \t \n \r (Cn, unassigned, included). */
static int is_control(int32_t cp)
{
    if (cp == '\t' || cp == '\n' || cp == '\r')
        return 0;
    utf8proc_category_t c = category(cp);
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CS ||
           c == UTF8PROC_CATEGORY_CO || c == UTF8PROC_CATEGORY_CN;
}

static int is_cjk(int32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Steps 1 and 2: _clean_text then _tokenize_chinese_chars. */
static int clean(const Codepoints *in, Codepoints *out)
{
    for (size_t i = 0; i < in->n; i++) {
        int32_t cp = in->cp[i];
        if (cp == 0 || cp == 0xFFFD || is_control(cp))
            continue;
        if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || category(cp) == UTF8PROC_CATEGORY_ZS) {
            SOWER_TRY(push(out, ' '));
        } else if (is_cjk(cp)) {
            SOWER_TRY(push(out, ' '));
            SOWER_TRY(push(out, cp));
            SOWER_TRY(push(out, ' '));
        } else {
            SOWER_TRY(push(out, cp));
        }
    }
    return SOWER_OK;
}

/* Step 3: unicodedata.normalize("NFC", text), through UTF-8 (no NUL is left after step 1). */
static int nfc(const Codepoints *in, Codepoints *out)
{
    size_t bytes = 0;
    unsigned char *utf8 = malloc(4 * in->n + 1);
    if (!utf8)
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for %zu code points", in->n);
    for (size_t i = 0; i < in->n; i++)
        bytes += (size_t)utf8proc_encode_char(in->cp[i], utf8 + bytes);
    utf8proc_uint8_t *composed = NULL;
    utf8proc_ssize_t n = utf8proc_map(utf8, (utf8proc_ssize_t)bytes, &composed, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(utf8);
    if (n < 0)
        return SOWER_FAIL(SOWER_EINPUT, "NFC: %s", utf8proc_errmsg(n));
    int status = decode((const char *)composed, (size_t)n, "NFC text", out);
    free(composed);
    return status;
}

/* Unicode's Cased and Case_Ignorable, as Python's handle_capital_sigma reads them. Cased: Lu, Ll, Lt,
 * Other_Lowercase and Other_Uppercase. Most of the latter have a case mapping (circled letters, roman
 * numerals) or are Lm/Mn (case-ignorable, so never asked); the 80 that are neither are listed: the
 * ordinal indicators and the squared and negative circled/squared capitals of U+1F130..1F189.
 * Case_Ignorable: Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter/MidNumLet/Single_Quote. */
static int is_cased(int32_t cp)
{
    utf8proc_category_t c = category(cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp || cp == 0xAA || cp == 0xBA ||
           (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
}

static int is_case_ignorable(int32_t cp)
{
    utf8proc_category_t c = category(cp);
    if (c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
        c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK)
        return 1;
    switch (cp) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    default:
        return 0;
    }
}

/* Python's Final_Sigma test for the capital sigma at word[i]. */
static int final_sigma(const int32_t *word, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && is_case_ignorable(word[j - 1]))
        j--;
    if (j == 0 || !is_cased(word[j - 1]))
        return 0;
    j = i + 1;
    while (j < n && is_case_ignorable(word[j]))
        j++;
    return j == n || !is_cased(word[j]);
}

/* Step 4: whitespace_tokenize, str.lower() per piece, " ".join. */
static int lower_and_join(const Codepoints *in, Codepoints *out)
{
    size_t i = 0;
    while (i < in->n) {
        while (i < in->n && clip_py_isspace(in->cp[i]))
            i++;
        size_t start = i;
        while (i < in->n && !clip_py_isspace(in->cp[i]))
            i++;
        if (i == start)
            break;
        if (out->n)
            SOWER_TRY(push(out, ' '));
        for (size_t k = start; k < i; k++) {
            int32_t cp = in->cp[k];
            if (cp == 0x130) { /* the one unconditional multi-character lowercase (SpecialCasing) */
                SOWER_TRY(push(out, 'i'));
                SOWER_TRY(push(out, 0x307));
            } else if (cp == 0x3A3) {
                SOWER_TRY(push(out, final_sigma(in->cp + start, i - start, k - start) ? 0x3C2 : 0x3C3));
            } else {
                SOWER_TRY(push(out, utf8proc_tolower(cp)));
            }
        }
    }
    return SOWER_OK;
}

/* IGNORECASE equality with an ASCII letter of the pattern: simple case folding adds U+017F (long s)
 * to 's' (the text is lowercase already). */
static int same_letter(int32_t cp, char want) { return cp == want || (want == 's' && cp == 0x17F); }

static size_t match_literal(const Codepoints *t, size_t pos, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (pos + k >= t->n || !same_letter(t->cp[pos + k], lit[k]))
            return 0;
    return k;
}

/* `[^\s\p{L}\p{N}]` under IGNORECASE: no case variant of cp may be a space, letter or number (so
 * U+0345, whose uppercase is a letter, matches no alternative and is dropped, as `regex` does). */
static int is_other(int32_t cp)
{
    const int32_t variants[4] = {cp, utf8proc_tolower(cp), utf8proc_toupper(cp), utf8proc_totitle(cp)};
    for (int v = 0; v < 4; v++)
        if (variants[v] == ' ' || is_letter(variants[v]) || is_number(variants[v]))
            return 0;
    return 1;
}

static int emit_range(const Codepoints *t, size_t from, size_t to, ClipWordFn emit, void *ctx)
{
    unsigned char stack[256], *utf8 = stack;
    if (4 * (to - from) > sizeof stack && !(utf8 = malloc(4 * (to - from))))
        return SOWER_FAIL(SOWER_ENOMEM, "out of memory for a %zu-character word", to - from);
    size_t bytes = 0;
    for (size_t i = from; i < to; i++)
        bytes += (size_t)utf8proc_encode_char(t->cp[i], utf8 + bytes);
    int status = emit(ctx, (const char *)utf8, bytes);
    if (utf8 != stack)
        free(utf8);
    return status;
}

/* Step 5: re.findall(pattern, text): at each position the first alternative that matches. */
static int find_words(const Codepoints *t, ClipWordFn emit, void *ctx)
{
    static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t pos = 0;
    while (pos < t->n) {
        size_t len = 0;
        for (size_t k = 0; k < 2 && !len; k++)
            len = match_literal(t, pos, specials[k]);
        for (size_t k = 0; k < 7 && !len; k++)
            len = match_literal(t, pos, contractions[k]);
        if (!len && is_letter(t->cp[pos]))
            while (pos + len < t->n && is_letter(t->cp[pos + len]))
                len++;
        if (!len && is_number(t->cp[pos]))
            len = 1;
        if (!len && is_other(t->cp[pos]))
            while (pos + len < t->n && is_other(t->cp[pos + len]))
                len++;
        if (!len) { /* a space, or a character no alternative takes */
            pos++;
            continue;
        }
        SOWER_TRY(emit_range(t, pos, pos + len, emit, ctx));
        pos += len;
    }
    return SOWER_OK;
}

int clip_pretokenize(const char *text, size_t len, const char *what, ClipWordFn emit, void *ctx)
{
    Codepoints raw = {0}, cleaned = {0}, composed = {0}, lowered = {0};
    int status = decode(text, len, what, &raw);
    if (status == SOWER_OK)
        status = clean(&raw, &cleaned);
    if (status == SOWER_OK)
        status = nfc(&cleaned, &composed);
    if (status == SOWER_OK)
        status = lower_and_join(&composed, &lowered);
    if (status == SOWER_OK)
        status = find_words(&lowered, emit, ctx);
    free(raw.cp), free(cleaned.cp), free(composed.cp), free(lowered.cp);
    return status;
}
