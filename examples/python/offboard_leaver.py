#!/usr/bin/env python3
"""Offboard a leaver: block sign-in and release the licences, take them out of every
distribution group, and wipe their mobile devices (each confirmed by typing its id).

    offboard_leaver.py --config integration.json --user ava.adams [--wipe account_only|full]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

import o365_essentials as o365


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--user", required=True, help="the local sAMAccountName")
    parser.add_argument("--wipe", choices=["account_only", "full"], default="account_only")
    parser.add_argument("--confirm-devices", nargs="*", default=None,
                        help="device ids typed again (asked for when not given)")
    args = parser.parse_args()

    integration = o365.Integration(args.config)
    links: List[Dict[str, Any]] = integration.list_links(local_user=args.user)
    if not links:
        print(f"{args.user} has no linked online account")
        return 1
    guid = links[0]["local_guid"]
    upn = links[0]["user_principal_name"]

    link = integration.unassign(local_guid=guid)
    print(f"{upn}: sign-in blocked, licences released (link {link['state']})")

    groups: List[Dict[str, Any]] = integration.list_distribution_groups()
    for g in groups:
        if upn.lower() in (m.lower() for m in g.get("member_user_names", [])):
            integration.remove_group_members(group=g["alias"], members=[upn])
            print(f"removed from {g['primary_smtp_address']}")

    devices: List[Dict[str, Any]] = integration.list_devices(user_principal_name=upn)
    for i, d in enumerate(devices):
        typed = (args.confirm_devices[i] if args.confirm_devices is not None and i < len(args.confirm_devices)
                 else input(f"wipe {d.get('friendly_name') or d['model']} ({args.wipe})? type its id {d['id']}: "))
        if typed.strip() != d["id"]:
            print(f"not wiped: {d['id']}")
            continue
        status = integration.wipe_device(device_id=d["id"], kind=args.wipe, confirm=typed.strip())
        print(f"wipe of {d['id']}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
