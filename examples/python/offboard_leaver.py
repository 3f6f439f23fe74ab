#!/usr/bin/env python3
"""Offboard a leaver: block sign-in and release the licences, take them out of every
distribution group, and wipe their mobile devices (each confirmed by typing its id).

    offboard_leaver.py --config integration.json --user ava.adams [--wipe account_only|full]
"""

from __future__ import annotations

import argparse
import sys

import o365_essentials as o365


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--user", required=True, help="the local sAMAccountName")
    parser.add_argument("--wipe", choices=["account_only", "full"], default="account_only")
    parser.add_argument("--confirm-devices", nargs="*", default=None,
                        help="device ids typed again (asked for when not given)")
    args = parser.parse_args()

    integration = o365.Integration(args.config)
    links = integration.list_links(local_user=args.user)
    if not links:
        print(f"{args.user} has no linked online account")
        return 1
    upn = links[0].user_principal_name

    link = integration.unassign(local_guid=links[0].local_guid)
    print(f"{upn}: sign-in blocked, licences released (link {link.state})")

    for group in integration.list_distribution_groups():
        if upn.lower() in (m.lower() for m in group.member_user_names):
            integration.remove_group_members(group=group.alias, members=[upn])
            print(f"removed from {group.primary_smtp_address}")

    confirmations: list[str] = list(args.confirm_devices or [])
    for i, device in enumerate(integration.list_devices(user_principal_name=upn)):
        if args.confirm_devices is not None:
            typed = confirmations[i] if i < len(confirmations) else ""
        else:
            typed = input(f"wipe {device.friendly_name or device.model} ({args.wipe})? type its id {device.id}: ")
        if typed.strip() != device.id:
            print(f"not wiped: {device.id}")
            continue
        status = integration.wipe_device(device_id=device.id, kind=args.wipe, confirm=typed.strip())
        print(f"wipe of {device.id}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
