/* test_clip_tokenizer.c: sower's CLIP tokenizer against transformers' CLIPTokenizer.
 * usage: test_clip_tokenizer DIR   (DIR: sd1/, sd2/ and reference.json from
 * validate/make_tokenizer_reference.py; tests/data/tokenizer is the committed one, its --full DIR the
 * whole 48894-merge vocabulary). Every case: the 77 ids StableDiffusionPipeline gets and the
 * untruncated length. Then the bad-input contract: invalid UTF-8, broken folders. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "clip_tokenizer.h"
#include "outfile.h"

static char *slurp(const char *path)
{
    unsigned char *data = NULL;
    size_t bytes = 0;
    if (file_read_all(path, 64 << 20, &data, &bytes) != SOWER_OK)
        return NULL;
    data[bytes] = '\0';
    return (char *)data;
}

static void test_reference(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    char *text = slurp(path);
    cJSON *ref = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(ref != NULL, "%s: missing or not JSON", path);
    if (!ref)
        return;
    ClipTokenizer *tok[2] = {NULL, NULL};
    const char *names[2] = {"sd1", "sd2"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        CHECK(clip_tokenizer_load(&tok[k], path) == SOWER_OK, "%s: does not load", path);
    }
    int cases = 0, wrong = 0;
    for (const cJSON *c = cJSON_GetObjectItem(ref, "cases")->child; c && tok[0] && tok[1]; c = c->next) {
        const ClipTokenizer *t = tok[strcmp(cJSON_GetObjectItem(c, "tokenizer")->valuestring, "sd2") == 0];
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        const int n = clip_tokenizer_max_length(t), n_want = cJSON_GetArraySize(want);
        int32_t ids[4096];
        size_t untruncated = 0;
        int ok = clip_tokenize(t, prompt, strlen(prompt), ids, &untruncated) == SOWER_OK;
        ok = ok && n == 77 && untruncated == (size_t)cJSON_GetObjectItem(c, "untruncated_length")->valueint;
        for (int i = 0; ok && i < n; i++)
            ok = ids[i] == (i < n_want ? cJSON_GetArrayItem(want, i)->valueint : clip_tokenizer_pad_id(t));
        if (!ok && wrong++ < 10) {
            fprintf(stderr, "  %s %s: got", cJSON_GetObjectItem(c, "tokenizer")->valuestring,
                    cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "prompt")));
            for (int i = 0; i < n && i < n_want + 1; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, " (untruncated %zu)\n", untruncated);
        }
        cases++;
    }
    CHECK(cases > 0 && wrong == 0, "%d of %d prompts tokenized differently from transformers", wrong, cases);
    printf("test_clip_tokenizer: %d prompts, %d differ from transformers\n", cases, wrong);

    /* A prompt of more than 75 tokens: the words dropped, as the pipeline's warning quotes them. */
    char long_prompt[1024] = "";
    for (int i = 0; i < 80; i++)
        strcat(long_prompt, "cat ");
    strcat(long_prompt, "dropped words");
    char *dropped = NULL;
    if (tok[0] && clip_tokenizer_dropped_text(tok[0], long_prompt, strlen(long_prompt), &dropped) == SOWER_OK)
        CHECK(dropped && strstr(dropped, "dropped words"), "dropped text '%s'", dropped ? dropped : "(none)");
    free(dropped);
    /* Invalid UTF-8 is refused, naming the byte. */
    int32_t ids[77];
    size_t untruncated;
    const char bad[] = "caf\xc3 ok";
    CHECK(tok[0] && clip_tokenize(tok[0], bad, strlen(bad), ids, &untruncated) == SOWER_EINPUT,
          "invalid UTF-8 accepted");
    CHECK(strstr(sower_error_message(), "invalid UTF-8 at byte 3") != NULL, "message: %s", sower_error_message());
    sower_error_clear();
    const char overlong[] = "\xc0\xaf";
    CHECK(tok[0] && clip_tokenize(tok[0], overlong, 2, ids, &untruncated) == SOWER_EINPUT, "overlong UTF-8 accepted");
    sower_error_clear();
    clip_tokenizer_free(tok[0]);
    clip_tokenizer_free(tok[1]);
    cJSON_Delete(ref);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* A broken folder is refused with SOWER_EINPUT (or SOWER_EPATH) and a message naming file and key. */
static void expect_refused(const char *dir, const char *want)
{
    ClipTokenizer *t = NULL;
    int status = clip_tokenizer_load(&t, dir);
    CHECK((status == SOWER_EINPUT || status == SOWER_EPATH) && !t, "broken folder (%s) accepted", want);
    CHECK(strstr(sower_error_message(), want) != NULL, "message '%s' lacks '%s'", sower_error_message(), want);
    sower_error_clear();
    clip_tokenizer_free(t);
}

static void test_bad_folders(void)
{
    char dir[] = "/tmp/sower-tok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    expect_refused(dir, "vocab.json");
    write_file(dir, "vocab.json", "[1, 2]");
    expect_refused(dir, "vocab.json: expected a JSON object");
    write_file(dir, "vocab.json", "{\"a\": 0, \"b\": -4}");
    expect_refused(dir, "key 'b'");
    write_file(dir, "vocab.json", "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"<|startoftext|>\": 3, \"<|endoftext|>\": 4}");
    expect_refused(dir, "merges.txt");
    write_file(dir, "merges.txt", "#version: 0.2\na b\n");
    expect_refused(dir, "tokenizer_config.json");
    write_file(dir, "tokenizer_config.json", "{\"model_max_length\": 1e30}");
    expect_refused(dir, "model_max_length");
    write_file(dir, "tokenizer_config.json", "{\"model_max_length\": 77, \"pad_token\": \"zz\"}");
    expect_refused(dir, "pad_token 'zz' is neither in vocab.json");
    write_file(dir, "tokenizer_config.json",
               "{\"model_max_length\": 77, \"added_tokens_decoder\": {\"9\": {\"content\": \"q\", \"single_word\": true}}}");
    expect_refused(dir, "single_word");
    write_file(dir, "tokenizer_config.json", "{\"model_max_length\": 77}");
    write_file(dir, "special_tokens_map.json", "{\"eos_token\": 7}");
    expect_refused(dir, "special_tokens_map.json: key 'eos_token'");
    write_file(dir, "special_tokens_map.json", "{\"eos_token\": {\"content\": \"<|endoftext|>\"}}");
    ClipTokenizer *t = NULL;
    CHECK(clip_tokenizer_load(&t, dir) == SOWER_OK, "the repaired folder does not load");
    int32_t ids[77];
    size_t untruncated = 0;
    CHECK(t && clip_tokenize(t, "ab a", 4, ids, &untruncated) == SOWER_OK && untruncated == 5 && ids[0] == 3 &&
              ids[1] == 0 && ids[2] == 4 && ids[3] == 2 && ids[4] == 4 && ids[5] == 4,
          "tiny vocabulary: 'ab' -> a, b</w> (unknown: unk), 'a' -> a</w>, then eos and pad");
    clip_tokenizer_free(t);
    const char *names[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
    char path[4200];
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        remove(path);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_clip_tokenizer DIR\n");
        return 2;
    }
    test_reference(argv[1]);
    test_bad_folders();
    return check_exit("test_clip_tokenizer");
}
