"""One bulk create through the Python package, timed: what ``benches/python.rs`` runs
side by side with the same bulk create through Rust.

    python bulk_create.py CONFIG_JSON_FILE EXPECTED_ACCOUNTS

Prints ``seconds: <plan + apply>`` and ``trivial_call_us: <one status call>``.
"""

import sys
import time

import o365_essentials as o365


def main() -> int:
    integration = o365.Integration(sys.argv[1])
    expected = int(sys.argv[2])
    integration.integrate()
    started = time.perf_counter()
    plan = integration.plan_bulk_create()
    results = integration.apply_plan(plan=plan)
    seconds = time.perf_counter() - started
    done = sum(1 for r in results.items if r.outcome is o365.Outcome.SUCCEEDED)
    if done != expected:
        print(f"{done} of {expected} accounts made", file=sys.stderr)
        return 1
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        integration.status()
    trivial = (time.perf_counter() - started) * 1e6 / rounds
    print(f"seconds: {seconds:.6f}")
    print(f"trivial_call_us: {trivial:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
