"""Runs a list of operations through the Python package, one per line of STEPS_FILE:

    operation <TAB> params JSON <TAB> expected code name <TAB> text the result must hold

the same format as the C ABI's ``tests/c/steps.c``. Each operation of the table goes
through its typed method (keyword arguments); the result is written back as JSON
(``to_json``) for the check and printed as ``operation <TAB> JSON``. ``$prev`` in the
parameters is the previous step's result. The Rust suite drives it against Samba
(tests/it/operations.rs), so the directory operations are proven from Python on a real
domain controller. Exits 1 at the first step that does not go as expected.

usage: python steps.py CONFIG_FILE STEPS_FILE
"""

import json
import sys

import o365_essentials as o365


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: steps.py CONFIG_FILE STEPS_FILE", file=sys.stderr)
        return 2
    integration = o365.Integration(sys.argv[1])
    table = {op["name"] for op in o365.OPERATIONS}
    prev = None
    with open(sys.argv[2], encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    for line in lines:
        fields = line.split("\t")
        op, params_text, want = fields[0], fields[1], fields[2]
        holds = fields[3] if len(fields) > 3 else ""
        if prev is not None:
            params_text = params_text.replace("$prev", prev)
        params = json.loads(params_text)
        try:
            if op in table:
                result = getattr(integration, op)(**params)
            else:
                result = integration.call(op, **params)
            got, text = "ok", json.dumps(o365.types.to_json(result), separators=(",", ":"))
        except o365.O365Error as e:
            got, text = e.code_name, ""
            message = str(e)
        if got != want:
            print(f"{op}: got {got} ({message if got != 'ok' else text}), want {want}", file=sys.stderr)
            return 1
        if got == "ok" and holds and holds not in text:
            print(f"{op}: the result lacks `{holds}`: {text}", file=sys.stderr)
            return 1
        print(f"{op}\t{text}")
        prev = text if got == "ok" else prev
    return 0


if __name__ == "__main__":
    sys.exit(main())
