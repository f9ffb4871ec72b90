#!/usr/bin/python3
"""The JSON Schema and `sower check` accept and reject the same job manifests.

usage: test_manifest_schema.py SOWER_BINARY SCHEMA_JSON CORPUS_DIR

CORPUS_DIR (tests/data/manifests) holds:
  good/*.yaml          valid: the schema accepts them and `sower check` exits 0 (printing the job)
  bad/*.yaml           invalid: the schema rejects them (or they are not YAML at all) and
                       `sower check` exits 2 with FILE:LINE:COL: expected ..., found ...
  bad_semantic/*.yaml  the schema accepts them but `sower check` must exit 2 (rules JSON Schema
                       cannot say: overflowing ranges, duplicate seeds, missing model, digest, ...)

Header comments at the top of a file (before its first non-comment line):
  # expect: TEXT     stderr must contain TEXT (case-insensitive); `A | B` means A or B.
                     Required in bad/ and bad_semantic/; in good/ it names a warning to expect.
  # line: N          the error's FILE:N: (1-based line of the offending key or value). Required in
                     bad/ unless the file is not YAML at all (then only FILE:LINE:COL: is checked).

For every file: no crash (signal, "Sanitizer", "runtime error"), and `check` creates nothing: not
the output file, nor anything beside the manifest, the output, or in the working directory (sower
runs from an empty temporary directory, so relative paths must resolve against the manifest's
directory). The corpus itself must mean the same under YAML 1.1 (PyYAML) and YAML 1.2 core (sower):
plain scalars such as yes/no/on/off, 1e3 or 017 are refused.

Needs only /usr/bin/python3 with python3-yaml and python3-jsonschema (Debian 12).
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

TIMEOUT_S = 300

# How sower reads plain scalars (schema/README.md): the YAML 1.2 core schema
# (https://yaml.org/spec/1.2.2/#1032-tag-resolution) with decimal integers only (0x.., 0o.. are strings).
CORE_12 = [
    ("null", re.compile(r"(?:null|Null|NULL|~|)\Z")),
    ("bool", re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")),
    ("int", re.compile(r"[-+]?[0-9]+\Z")),
    ("float", re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                         r"|[-+]?(?:\.inf|\.Inf|\.INF)|\.nan|\.NaN|\.NAN)\Z")),
]
PYYAML_KIND = {"tag:yaml.org,2002:null": "null", "tag:yaml.org,2002:bool": "bool",
               "tag:yaml.org,2002:int": "int", "tag:yaml.org,2002:float": "float",
               "tag:yaml.org,2002:str": "str"}


def core12_kind(text):
    for kind, rx in CORE_12:
        if rx.match(text):
            return kind
    return "str"


def yaml_version_traps(text):
    """Plain scalars that PyYAML (YAML 1.1) and a YAML 1.2 core reader would read differently."""
    problems = []

    def walk(node):
        if isinstance(node, yaml.ScalarNode):
            tagged = text.startswith("!", node.start_mark.index)  # explicit: both read its tag (sower refuses it)
            if node.style is None and node.tag in PYYAML_KIND and not tagged:
                k11, k12 = PYYAML_KIND[node.tag], core12_kind(node.value)
                leading_zero = k12 == "int" and re.match(r"[-+]?0[0-9]", node.value)
                if k11 != k12 or leading_zero:
                    problems.append(f"line {node.start_mark.line + 1}: {node.value!r} is {k11} in YAML 1.1 but "
                                    f"{k12} as sower reads it (YAML 1.2 core)"
                                    + (" (a leading zero: octal in YAML 1.1)" if leading_zero else ""))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(k)
                walk(v)

    try:
        walk(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        pass
    return problems


def read_header(text):
    """`# key: value` comment lines at the top of the file (before the first non-comment line)."""
    header = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#\s*(expect|line):\s*(.*?)\s*$", line)
        if m and m.group(1) not in header:
            header[m.group(1)] = m.group(2)
    return header


def snapshot(dirs):
    """Names present in each existing directory."""
    return {d: set(os.listdir(d)) for d in dirs if os.path.isdir(d)}


def schema_side(text, validator):
    """(doc, why, not_yaml): why is None when PyYAML loads the text and the schema accepts it."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return None, "not YAML (" + str(e).replace("\n", " ")[:200] + ")", True
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    why = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:150]}" for e in errors[:3])
    return doc, why or None, False


def output_path(doc, manifest):
    """The output file the manifest names (relative to the manifest's directory), if it names one."""
    if isinstance(doc, dict) and isinstance(doc.get("output"), dict):
        p = doc["output"].get("path")
        if isinstance(p, str) and p and "\0" not in p:
            return os.path.normpath(os.path.join(os.path.dirname(manifest), p))
    return None


def run_check(sower, manifest, doc, cwd, problems):
    """Runs `sower check MANIFEST` from cwd; returns (rc, stdout, stderr), rc None when it did not run.
    Records a problem for anything it creates: the output, or a file beside the manifest, beside the
    output (in its nearest existing folder: no folders either) or in cwd."""
    out_path = output_path(doc, manifest)
    watched = [cwd, os.path.dirname(manifest)]
    if out_path:
        d = os.path.dirname(out_path)
        while d and not os.path.isdir(d) and d != os.path.dirname(d):
            d = os.path.dirname(d)
        watched.append(d)
    before = snapshot(watched)
    out_existed = bool(out_path) and os.path.lexists(out_path)
    rc, out, err = None, "", ""
    try:
        r = subprocess.run([sower, "check", manifest], cwd=cwd, capture_output=True, timeout=TIMEOUT_S)
        rc, out, err = r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        problems.append(f"sower check ran past {TIMEOUT_S} s")
    except OSError as e:
        problems.append(f"cannot run {sower}: {e}")
    after = snapshot(watched)
    for d in before:
        created = sorted(after.get(d, set()) - before[d])
        if created:
            problems.append(f"check created {', '.join(os.path.join(d, c) for c in created)}")
    if out_path and not out_existed and os.path.lexists(out_path):
        problems.append(f"check created the output {out_path}")
    return rc, out, err


def round_trip(sower, normalised, validator, cwd):
    """The normalised job `sower check` prints is itself a good manifest, read as the same job from
    another folder (absolute, quoted paths) and by a YAML 1.1 reader (1.0e-320, not 1e-320, a string
    there): checking it again prints it unchanged."""
    _, why, _ = schema_side(normalised, validator)
    problems = [f"the schema rejects the normalised job: {why}"] if why else []
    with tempfile.TemporaryDirectory(prefix="sower-normalised-") as d:
        again = os.path.join(d, "normalised.yaml")
        with open(again, "w", encoding="utf-8") as f:
            f.write(normalised)
        r = subprocess.run([sower, "check", again], cwd=cwd, capture_output=True, timeout=TIMEOUT_S)
        out = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0:
            problems.append(f"check of the normalised job exits {r.returncode}: "
                            f"{r.stderr.decode('utf-8', 'replace').strip()[:300]}")
        elif out != normalised:
            changed = [(a, b) for a, b in zip(normalised.splitlines(), out.splitlines()) if a != b][:2]
            problems.append(f"the normalised job reads back as another: {changed}")
    return problems


def check_file(kind, manifest, sower, validator, cwd):
    """Every problem with one corpus file (an empty list: it passes)."""
    problems = []
    with open(manifest, encoding="utf-8") as f:
        text = f.read()
    header = read_header(text)
    expects = [e.strip() for e in header.get("expect", "").split(" | ") if e.strip()]
    line = header.get("line")
    if line is not None and not line.isdigit():
        problems.append(f"corpus: '# line: {line}' is not a line number")
        line = None

    # The schema side: PyYAML + jsonschema.
    doc, why, not_yaml = schema_side(text, validator)
    if not not_yaml:
        problems += [f"corpus: {p}" for p in yaml_version_traps(text)]
    if kind == "good" and why:
        problems.append(f"schema rejects a good manifest: {why}")
    if kind == "bad" and not why:
        problems.append("schema accepts a bad manifest")
    if kind == "bad_semantic" and why:
        problems.append(f"schema rejects it (it belongs in bad/): {why}")
    if kind != "good" and not expects:
        problems.append("corpus: no '# expect:' header")
    if kind == "bad" and not not_yaml and line is None:
        problems.append("corpus: no '# line:' header (required unless the file is not YAML)")

    # The sower side.
    rc, out, err = run_check(sower, manifest, doc, cwd, problems)
    if rc is None:
        return problems
    brief = err.strip().replace("\n", " | ")[:400]
    if rc < 0:
        problems.append(f"sower check died of signal {-rc}: {brief}")
    if "Sanitizer" in err or "runtime error" in err:
        problems.append(f"sanitizer report: {err[:1500]}")
    names = {manifest, os.path.realpath(manifest)}  # FILE as given (or resolved)

    def located(pattern):
        return any(re.search(re.escape(n) + pattern, err) for n in names)

    has_expect = not expects or any(e.lower() in err.lower() for e in expects)
    lacks = f"lacks {' or '.join(map(repr, expects))}: {brief}"
    if kind == "good":
        if rc != 0:
            problems.append(f"sower check exits {rc}, expected 0: {brief}")
            return problems
        if not out.strip():
            problems.append("sower check printed no normalised job on standard output")
        if not has_expect:
            problems.append(f"standard error {lacks}")
        problems += round_trip(sower, out, validator, cwd)
        return problems
    if rc != 2:
        problems.append(f"sower check exits {rc}, expected 2: {brief}")
        return problems
    if not has_expect:
        problems.append(f"message {lacks}")
    if line is not None:
        if not located(rf":{line}:\d+:"):
            problems.append(f"message lacks FILE:{line}:COLUMN: {brief}")
    elif kind == "bad":
        if not located(r":\d+:\d+:"):
            problems.append(f"message lacks FILE:LINE:COLUMN: {brief}")
    elif not any(n in err for n in names):
        problems.append(f"message does not name the manifest: {brief}")
    if kind == "bad" and not ("expected" in err and "found" in err):
        problems.append(f"message is not 'expected ..., found ...': {brief}")
    return problems


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sower, schema_path, corpus = (os.path.abspath(a) for a in sys.argv[1:])
    with open(schema_path) as f:
        schema = json.load(f)
    validator_class = getattr(jsonschema, "Draft202012Validator", None) or jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    passed, failed = 0, 0
    general = []
    kinds = ("good", "bad", "bad_semantic")
    for kind in kinds:
        if not glob.glob(os.path.join(corpus, kind, "*.yaml")):
            general.append(f"{kind}/: no manifests in {os.path.join(corpus, kind)}")
    if not (os.path.isfile(sower) and os.access(sower, os.X_OK)):
        general.append(f"{sower}: not an executable file")

    # sower runs from an empty directory: relative paths must resolve against the manifest's folder.
    with tempfile.TemporaryDirectory(prefix="sower-manifest-test-") as cwd:
        for kind in kinds:
            for manifest in sorted(glob.glob(os.path.join(corpus, kind, "*.yaml"))):
                problems = check_file(kind, manifest, sower, validator, cwd)
                for p in problems:
                    print(f"FAIL: {os.path.relpath(manifest, corpus)}: {p}", file=sys.stderr)
                if problems:
                    failed += 1
                else:
                    passed += 1
        leftover = os.listdir(cwd)
        if leftover:
            general.append(f"the working directory holds {leftover} after the checks")

    for p in general:
        print(f"FAIL: {p}", file=sys.stderr)
    failed += len(general)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
