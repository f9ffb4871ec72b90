#!/usr/bin/python3
"""Tokenizer folders as other writers leave them, and hostile ones (a review of stop 38 found each case):

1. tests/data/tokenizer/variants.json (validate/make_tokenizer_reference.py, transformers 4.46.3): sd1 edited
   into a legacy folder (no added_tokens_decoder: special_tokens_map.json overrides the config, added_tokens.json
   adds tokens; sower read neither added_tokens.json nor the rule) and into a current one that carries a
   conflicting special_tokens_map.json and added_tokens.json (transformers reads neither; sower took the map's
   pad token); a merges.txt of old Mac line ends (a lone \r: every merge was lost) and one whose fields are
   split by Unicode whitespace (str.split() splits there; sower split only on ASCII). `sower tokenize` must
   give transformers' 77 ids. Also BPE pieces looked up as convert_tokens_to_ids does: an added token's id
   first ("a</w>" added as 5), an unknown piece vocab.json's id of the unknown token's text.
2. Refused, exit 2, naming the file: a \\u0000 in a vocab.json key (cJSON cut "a</w>\\u0000" to "a</w>",
   overwriting its id), an added_tokens_decoder that is a list (ignored before) or holds a bare string
   (transformers raises), and, through the pipeline folder, a token id past the text encoder's embeddings
   (check passed it; a run failed when a prompt first met the token).

usage: test_tokenizer_variants.py SOWER TOKENIZER_DATA_DIR SD_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from testing import check, edit_json, finish


def tokenize(sower, folder, prompt):
    return subprocess.run([sower, "tokenize", folder, "--prompt", prompt], capture_output=True, text=True, timeout=60)


def edited(src, dst, edit):
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def main():
    sower, data, sd = (os.path.abspath(a) for a in sys.argv[1:4])
    variants = json.load(open(os.path.join(data, "variants.json")))["cases"]
    with tempfile.TemporaryDirectory() as tmp:
        made = {}
        for case in variants:
            d = made.get(case["name"])
            if d is None:
                def apply(d, case=case):
                    def config(c):
                        for k in case["drop_config_keys"]:
                            c.pop(k, None)
                        c.update(case.get("config_set", {}))
                    edit_json("tokenizer_config.json", config)(d)
                    for name, content in case["files"].items():
                        json.dump(content, open(os.path.join(d, name), "w"))
                    merges = os.path.join(d, "merges.txt")  # as apply_merges_edit in the reference script
                    text = open(merges, "rb").read().decode("utf-8")
                    if "merges_newline" in case:
                        text = text.replace("\n", case["merges_newline"])
                    open(merges, "wb").write((text + case.get("merges_append", "")).encode("utf-8"))
                d = made[case["name"]] = edited(os.path.join(data, "sd1"), os.path.join(tmp, case["name"]), apply)
            r = tokenize(sower, d, case["prompt"])
            got = json.loads(r.stdout)["input_ids"] if r.returncode == 0 else None
            check(got == case["ids"], f"{case['name']} {case['prompt']!r}: sower {got} ({r.stderr.strip()[-200:]}), "
                                      f"transformers {case['ids']}")

        def refused(what, folder, prompt, text):
            r = tokenize(sower, folder, prompt)
            check(r.returncode == 2 and text in r.stderr and "Sanitizer" not in r.stderr,
                  f"{what}: exit {r.returncode}, {r.stderr.strip()[-300:]!r} (expected 2 and {text!r})")

        sd1 = os.path.join(data, "sd1")
        nul = edited(sd1, os.path.join(tmp, "nul"), edit_json("vocab.json", lambda v: v.update({"a</w>\u0000": 5})))
        refused("a \\u0000 in a vocab key", nul, "a photo", "vocab.json: a string holds \\u0000")
        as_list = edited(sd1, os.path.join(tmp, "list"), edit_json(
            "tokenizer_config.json", lambda c: c.update(added_tokens_decoder=[{"content": "horse"}])))
        refused("added_tokens_decoder a list", as_list, "a horse", "key 'added_tokens_decoder': expected an object")
        bare = edited(sd1, os.path.join(tmp, "bare"), edit_json(
            "tokenizer_config.json", lambda c: c["added_tokens_decoder"].update({"100": "horse"})))
        refused("an added_tokens_decoder string", bare, "a horse", "added_tokens_decoder key '100'")
        # a legacy folder's added_tokens.json (now read) of a bad id or not an object
        def legacy_added(content):
            def edit(d):
                edit_json("tokenizer_config.json", lambda c: c.pop("added_tokens_decoder"))(d)
                open(os.path.join(d, "added_tokens.json"), "w").write(content)
            return edit
        refused("added_tokens.json id not an integer", edited(sd1, os.path.join(tmp, "added-float"),
                legacy_added('{"horse": 1.5}')), "a horse", "added_tokens.json: key 'horse': expected an id")
        refused("added_tokens.json a list", edited(sd1, os.path.join(tmp, "added-list"), legacy_added('["horse"]')),
                "a horse", "added_tokens.json: not a JSON object")
        # an id past the text encoder's embeddings: named when the folder loads (sample, check), whatever the prompt
        far = edited(sd, os.path.join(tmp, "far"), edit_json("tokenizer/vocab.json", lambda v: v.update({"a</w>": 9999999})))
        r = subprocess.run([sower, "sample", far, "--prompt", "b", "--seeds", "0", "--steps", "2", "-o",
                            os.path.join(tmp, "far.npy")], capture_output=True, text=True, timeout=120)
        check(r.returncode == 2 and "token 'a</w>' has id 9999999, past the 3514 embeddings" in r.stderr,
              f"an id past the embeddings: exit {r.returncode}, {r.stderr.strip()[-300:]!r}")
    print(f"tokenizer variants: {len(variants)} transformers cases, 6 refusals")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
