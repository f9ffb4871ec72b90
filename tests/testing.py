"""What the Python tests share: check() records a failed expectation and lets the test go on; finish()
prints every failure and gives the exit code (0 when none); edit_json() edits a JSON file of a model folder."""
import json
import os

failures = []


def edit_json(rel, fn):
    """An edit of folder d's JSON file rel: fn changes the parsed object in place, which is written back."""
    def apply(d):
        p = os.path.join(d, rel)
        obj = json.load(open(p))
        fn(obj)
        json.dump(obj, open(p, "w"))
    return apply


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def finish():
    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        return 1
    return 0
