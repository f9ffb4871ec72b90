#!/usr/bin/env python3
"""Reference data for sower's CLIP tokenizer (src/text/clip_tokenizer.c), made with the real transformers.

Rerun (Debian 12, the reference environment: Debian torch 1.13.1, transformers 4.46.3, diffusers 0.31.0, and
open_clip_torch installed with --no-deps only for its BPE file; ftfy NOT installed, as in a default
diffusers install, so CLIPTokenizer cleans text with its BasicTokenizer):
    /opt/refenv/bin/python validate/make_tokenizer_reference.py tests/data/tokenizer
Then: ./build/tests/test_clip_tokenizer tests/data/tokenizer

What it writes:
  - sd1/ and sd2/: tokenizer folders written by CLIPTokenizer.save_pretrained, with the real CLIP BPE
    merges (open_clip's bpe_simple_vocab_16e6.txt.gz) cut to the first MERGES of the 48894, so the
    committed files stay small (vocab.json, merges.txt as the hub has them otherwise: ids 0..255 the
    byte symbols, 256..511 the same with </w>, then one per merge, then <|startoftext|>, <|endoftext|>).
    sd1 pads with <|endoftext|> (SD 1.x), sd2 with "!" (SD 2.x, whose "!" is an added token).
  - variants.json: sd1 edited as other writers leave folders (VARIANTS: a legacy folder, whose
    special_tokens_map.json and added_tokens.json count, and a current one, whose do not), the full ids of a
    few prompts; tests/test_tokenizer_variants.py makes the same edits.
  - reference.json: for every prompt and both folders, what StableDiffusionPipeline gets from
    tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids (up to and
    including the EOS; the rest is the folder's pad id), and the length of the untruncated ids (the
    pipeline's truncation warning).
With --full DIR it also writes DIR/sd1, DIR/sd2 with all 48894 merges (1 MB each, not committed) and
DIR/reference.json, for `test_clip_tokenizer DIR` by hand.
"""
import argparse
import glob
import gzip
import json
import os
import random
import sys

sys.modules["ftfy"] = None  # a default install has no ftfy: CLIPTokenizer must take its BasicTokenizer path

import transformers  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

MERGES = 3000
FULL_MERGES = 49152 - 256 - 2


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def bpe_file():
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    hits = glob.glob(os.path.join(os.path.dirname(spec.origin), "bpe_simple_vocab_16e6.txt.gz"))
    if not hits:
        sys.exit("open_clip's bpe_simple_vocab_16e6.txt.gz not found (pip install --no-deps open_clip_torch)")
    return hits[0]


def write_tokenizer(dst, n_merges, pad):
    lines = gzip.open(bpe_file()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : FULL_MERGES + 1]][:n_merges]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(dst, exist_ok=True)
    tmp_vocab, tmp_merges = os.path.join(dst, "vocab.json.in"), os.path.join(dst, "merges.txt.in")
    with open(tmp_vocab, "w", encoding="utf-8") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(tmp_merges, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(tmp_vocab, tmp_merges, pad_token=pad, model_max_length=77)
    os.remove(tmp_vocab), os.remove(tmp_merges)
    tok.save_pretrained(dst)
    return CLIPTokenizer.from_pretrained(dst)


def prompts():
    curated = [
        "", " ", "   \t\n ", "a photograph of an astronaut riding a horse",
        "A Photograph Of An Astronaut Riding A Horse", "DON'T STOP: it's, we're, I'VE, you'll, he'd, I'm",
        "'s 't 're 've 'm 'll 'd ' s", "l'été à Paris, naïve café, crème brûlée", "Ελληνικά ΟΔΥΣΣΕΥΣ σοφός ΣΑΣ",
        "İstanbul KIRMIZI ışık", "ſtreet 'ſ \u212aelvin", "русский текст, Москва", "日本語のテキスト、東京タワー",
        "中文提示词：一只猫坐在窗台上", "한국어 프롬프트 서울", "emoji 🐱🚀 👍🏽 👨‍👩‍👧 🇫🇷 ❤️", "e\u0301 a\u0308 n\u0303 combining",
        "zero\u200bwidth\u200djoiner\ufeffbom soft\u00adhyphen", "nbsp\u00a0here ideographic\u3000space",
        "line\u2028separator para\u2029graph", "tab\there\nnewline\r\ncrlf", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ﬁne ﬂow ligatures",
        "1234567890 3.14159 1,000,000 2^64-1", "hello !!! world!!", "!!!", "!", "wow!?! ...", "a<|endoftext|>b",
        "<|startoftext|>start <|endoftext|>end", "<|ENDOFTEXT|> upper special", "<|startoftext|><|endoftext|>",
        "&amp; &lt;html&gt; <b>bold</b>", "C++ and C# (and F#) -- [brackets] {braces} @user #tag $5 %20",
        "snake_case kebab-case CamelCase ALLCAPS", "the quick brown fox " * 12,
        "masterpiece, best quality, ultra-detailed, 8k, (photorealistic:1.4), RAW photo, " * 4,
        "null\x01ctrl\x7fdel\x85nel\x0bvt\x0cff", "\ufffdreplacement", "ΣΑΣ σας Σ",
        "Ǆ ǅ ǆ titlecase", "ÅNGSTRÖM ÆØÅ ß ẞ", "Ⅻ roman Ⅻ ⑤ ½ ² superscripts", "١٢٣ arabic digits مرحبا",
        "हिन्दी पाठ", "ไทย ภาษา", "עברית טקסט", "a-b_c.d/e\\f|g~h`i", "   leading and trailing   ",
        # Cased without a case mapping (Other_Lowercase/Other_Uppercase): the final-sigma rule reads them
        "aΣ\xaa", "ºΣ", "\U0001f150Σ", "\U0001f130Σ x", "aΣ\U0001f189", "\U0001f170Σ",
    ]
    rng = random.Random(20261203)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " " * 8, ".,;:!?'\"()[]-_/&*+=<>",
        "àáâãäåçèéêëìíîïñòóôõöùúûüýÿœæß", "ΑΒΓΔΣαβγδσςωΩ", "абвгдежзийклмнопрстуфхцчшщъыьэюя",
        "的一是不了人我在有他这中大来上", "あいうえおカキクケコ", "가나다라마바사", "😀😂🥰🤖🎨🌸🔥✨", "\u0300\u0301\u0302\u0308\u0327",
        "\u200b\u200d\u00ad\ufeff\u00a0\u3000\t\n", "İıſ\u212a",
    ]
    generated = []
    for _ in range(260):
        n = rng.randint(1, 60)
        text = ""
        while len(text) < n:
            pool = rng.choice(pools) if rng.random() < 0.35 else pools[0]
            text += "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
            if rng.random() < 0.5:
                text += " "
        generated.append(text)
    return curated + generated


def reference(root, names):
    cases = []
    for p in prompts():
        for name in names:
            tok = CLIPTokenizer.from_pretrained(os.path.join(root, name))
            ids = tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
            full = tok(p, padding="longest", return_tensors=None).input_ids
            # up to and including the EOS: the rest is the pad id, which the test checks
            cases.append({"tokenizer": name, "prompt": p, "ids": ids[: min(len(full), len(ids))],
                          "untruncated_length": len(full)})
    return {
        "generated_by": "validate/make_tokenizer_reference.py",
        "transformers": transformers.__version__,
        "python_unicode": __import__("unicodedata").unidata_version,
        "regex": __import__("regex").__version__,
        "cases": cases,
    }


# Folders as other writers leave them, made from sd1 (tests/test_tokenizer_variants.py makes the same edits):
# config keys dropped, then whole JSON files written. Legacy folders (no added_tokens_decoder: SD 1.5's, written
# before transformers 4.34) take special_tokens_map.json over the config and add added_tokens.json; folders
# with added_tokens_decoder read neither.
SPECIAL_PAD_BANG = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "pad_token": "!"}
VARIANTS = [
    {"name": "legacy", "drop_config_keys": ["added_tokens_decoder"],
     "files": {"special_tokens_map.json": SPECIAL_PAD_BANG, "added_tokens.json": {"horse": 100}}},
    {"name": "modern-ignores-map", "drop_config_keys": [],
     "files": {"special_tokens_map.json": SPECIAL_PAD_BANG, "added_tokens.json": {"horse": 100}}},
    # convert_tokens_to_ids: a BPE piece is an added token's id first ("a</w>" -> 5), an unknown piece vocab.json's
    # id of the unknown token's text (3513 here, where the added <|endoftext|> is 3000)
    {"name": "added-ids", "drop_config_keys": [], "files": {}, "config_set": {"added_tokens_decoder": {
        "3000": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False,
                 "special": True},
        "3512": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                 "single_word": False, "special": True},
        "5": {"content": "a</w>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False,
              "special": False}}},
     "merges_append": "q z</w>\n"},
    # merges.txt: old Mac line ends (open() reads a lone \r as a line end), fields split on Python whitespace
    {"name": "merges-cr", "drop_config_keys": [], "files": {}, "merges_newline": "\r"},
    {"name": "merges-unicode-space", "drop_config_keys": [], "files": {},
     "merges_append": "q\u001fz</w>\nh\u00a0o\nr\u2028s</w>\n"},
]
VARIANT_PROMPTS = ["a horse", "a horse riding horses <|endoftext|> x", "horseshoe!", "qz hors", "a <|ENDOFTEXT|> b"]


def apply_merges_edit(v, path):
    """The variant's edit of merges.txt, in bytes (tests/test_tokenizer_variants.py makes the same)."""
    text = open(path, "rb").read().decode("utf-8")
    if "merges_newline" in v:
        text = text.replace("\n", v["merges_newline"])
    text += v.get("merges_append", "")
    open(path, "wb").write(text.encode("utf-8"))


def variants(root):
    import shutil
    out = []
    for v in VARIANTS:
        d = os.path.join(root, "variant-" + v["name"])
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(os.path.join(root, "sd1"), d)
        cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
        for k in v["drop_config_keys"]:
            cfg.pop(k, None)
        cfg.update(v.get("config_set", {}))
        json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"))
        for name, content in v["files"].items():
            json.dump(content, open(os.path.join(d, name), "w"))
        apply_merges_edit(v, os.path.join(d, "merges.txt"))
        tok = CLIPTokenizer.from_pretrained(d, local_files_only=True)
        for p in VARIANT_PROMPTS:
            ids = tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
            out.append(dict(v, prompt=p, ids=ids))
        shutil.rmtree(d)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="tests/data/tokenizer")
    ap.add_argument("--full", help="also write full-vocabulary tokenizers and their reference here")
    a = ap.parse_args()
    for root, n in [(a.out, MERGES)] + ([(a.full, FULL_MERGES)] if a.full else []):
        write_tokenizer(os.path.join(root, "sd1"), n, "<|endoftext|>")
        write_tokenizer(os.path.join(root, "sd2"), n, "!")
        ref = reference(root, ["sd1", "sd2"])
        with open(os.path.join(root, "reference.json"), "w", encoding="utf-8") as f:
            head = {k: v for k, v in ref.items() if k != "cases"}
            f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n')
            f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in ref["cases"]) + "\n]}\n")
        print(f"{root}: {len(ref['cases'])} cases, {n} merges")
    with open(os.path.join(a.out, "variants.json"), "w", encoding="utf-8") as f:
        json.dump({"generated_by": "validate/make_tokenizer_reference.py", "transformers": transformers.__version__,
                   "cases": variants(a.out)}, f, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    main()
