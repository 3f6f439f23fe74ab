#!/usr/bin/env python3
"""Create Microsoft 365 accounts for the local users listed in a CSV file.

    bulk_create_from_csv.py --config integration.json --csv new-starters.csv [--yes]

The CSV has a ``user`` column (the local sAMAccountName). The plan is shown first —
nothing is written until you confirm (or pass ``--yes``) — then applied with a progress
bar; the results file lands in the configuration's ``results_folder``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from typing import Any, Dict, List, Set

import o365_essentials as o365


def read_users(path: str) -> Set[str]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "user" not in rows[0]:
        raise SystemExit(f"{path}: the CSV needs a `user` column")
    return {row["user"].strip().lower() for row in rows if row["user"].strip()}


def progress_bar(event: Dict[str, Any]) -> None:
    if event["event"] != "progress" or not sys.stderr.isatty():
        return
    done, total = int(event["done"]), max(1, int(event["total"]))
    filled = 30 * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {event.get('current') or ''}")
    sys.stderr.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--yes", action="store_true", help="apply without asking")
    args = parser.parse_args()

    wanted = read_users(args.csv)
    integration = o365.Integration(args.config)
    try:
        integration.status()
    except o365.NotIntegratedError:
        integration.integrate()
    plan = integration.plan_bulk_create()
    items: List[o365.PlanItemCreateAccount] = [
        i
        for i in plan.items
        if isinstance(i, o365.PlanItemCreateAccount) and i.local.sam_account_name.lower() in wanted
    ]
    for name in sorted(wanted - {i.local.sam_account_name.lower() for i in items}):
        print(f"not planned: {name} (no such local user, or linked already)")
    if not items:
        print("nothing to do")
        return 0
    print(f"{len(items)} accounts to create:")
    for item in items:
        print(f"  {item.local.sam_account_name:<24} -> {item.user_principal_name}")
    if not args.yes and input("Create them? [y/N] ").strip().lower() != "y":
        print("nothing was changed")
        return 1
    chosen = dataclasses.replace(plan, items=list(items))
    try:
        results = integration.apply_plan(plan=chosen, progress=progress_bar)
    except KeyboardInterrupt:
        print("\nstopped; what was done is in the results file — run again for the rest")
        return 130
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    outcomes: Dict[str, int] = {}
    for result in results.items:
        outcomes[str(result.outcome)] = outcomes.get(str(result.outcome), 0) + 1
        if result.outcome is o365.Outcome.FAILED:
            print(f"  failed: {result.local_user}: {result.service_message} — {result.recommended_action}")
    print(", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())))
    print(f"run {results.run_id}")
    return 0 if outcomes.get("failed", 0) == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
