#!/usr/bin/env python3
"""A nightly report: licences used and free, password problems, DNS health.

    nightly_report.py --config integration.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

import o365_essentials as o365


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    integration = o365.Integration(args.config)
    problems = 0

    print("Licences")
    skus: List[Dict[str, Any]] = integration.licences()
    for s in skus:
        free = int(s["enabled_units"]) - int(s["consumed_units"])
        print(f"  {s['sku_part_number']:<28} used {s['consumed_units']:>4}  free {free:>4}")
        problems += free < 0

    print("Password problems")
    pw: List[Dict[str, Any]] = integration.password_problems()
    for p in pw:
        print(f"  {p}")
    if not pw:
        print("  none")
    problems += len(pw)

    print("DNS health")
    try:
        health: Dict[str, Any] = integration.health_report()
        for check in health.get("checks", []):
            print(f"  {check['status']:<6} {check['id']}: {check['detail']}")
            if check["status"] != "pass":
                problems += 1
                print(f"         fix: {check['fix']}")
    except o365.InvalidInputError as e:
        print(f"  not checked: {e}")
    print(f"{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
