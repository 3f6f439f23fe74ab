#!/usr/bin/env python3
"""A nightly report: licences used and free, password problems, DNS health.

    nightly_report.py --config integration.json
"""

from __future__ import annotations

import argparse
import sys

import o365_essentials as o365


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    integration = o365.Integration(args.config)
    problems = 0

    print("Licences")
    for sku in integration.licences():
        free = sku.enabled_units - sku.consumed_units
        print(f"  {sku.sku_part_number:<28} used {sku.consumed_units:>4}  free {free:>4}")
        problems += free < 0

    print("Password problems")
    refused = integration.password_problems()
    for p in refused:
        print(f"  {p.local_guid}: {p.error_code}: {p.message} ({p.attempts} attempts)")
    if not refused:
        print("  none")
    problems += len(refused)

    print("DNS health")
    try:
        health = integration.health_report()
        for check in health.checks:
            print(f"  {check.status:<6} {check.id}: {check.detail}")
            if check.status is not o365.CheckStatus.PASS:
                problems += 1
                print(f"         fix: {check.fix}")
    except o365.InvalidInputError as e:
        print(f"  not checked: {e}")
    print(f"{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
