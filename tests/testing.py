"""What the Python tests share: check() records a failed expectation and lets the test go on; finish()
prints every failure and gives the exit code (0 when none)."""
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def finish():
    if failures:
        print("\n".join("FAIL: " + f for f in failures))
        return 1
    return 0
