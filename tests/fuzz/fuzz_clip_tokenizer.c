/* fuzz_clip_tokenizer.c: prompts, any bytes, through the CLIP tokenizer of the committed SD 2.x-style
 * folder (tests/data/tokenizer/sd2: "!" is an added token there). Either the ids keep their shape
 * (bos, content, eos, pads: max_length of them, every id one the folder knows) or the prompt is
 * refused as bad input saying "invalid UTF-8" (the caller names which prompt: prompt_tokenize). */
#include "clip_tokenizer.h"
#include "fuzz.h"

static ClipTokenizer *tokenizer(void)
{
    static ClipTokenizer *t;
    if (!t && clip_tokenizer_load(&t, SOWER_FUZZ_TOKENIZER_DIR) != SOWER_OK) {
        sower_error_print(stderr, 1);
        abort();
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ClipTokenizer *t = tokenizer();
    int32_t ids[77];
    size_t untruncated = 0;
    int status = clip_tokenize(t, (const char *)data, size, ids, &untruncated);
    if (status != SOWER_OK) {
        fuzz_expect_input_error(status, "invalid UTF-8");
        return 0;
    }
    const int n = clip_tokenizer_max_length(t);
    FUZZ_ASSERT(n == 77 && untruncated >= 2, "max_length %d, untruncated %zu", n, untruncated);
    const size_t eos = untruncated < (size_t)n ? untruncated - 1 : (size_t)n - 1;
    FUZZ_ASSERT(ids[0] == 3512 && ids[eos] == 3513, "bos %d, eos %d at %zu", ids[0], ids[eos], eos);
    for (int i = 0; i < n; i++)
        FUZZ_ASSERT(ids[i] >= 0 && ids[i] <= 3513, "id %d at %d", ids[i], i);
    for (size_t i = eos + 1; i < (size_t)n; i++)
        FUZZ_ASSERT(ids[i] == clip_tokenizer_pad_id(t), "not a pad at %zu", i);
    return 0;
}
