"""Runs a list of operations through the Python package, one per line of STEPS_FILE:

    operation <TAB> params JSON <TAB> expected code name <TAB> text the result must hold

the same format as the C ABI's ``tests/c/steps.c``. Each operation of the table goes
through its typed method (keyword arguments); the result is written back as JSON
(``to_json``) for the check and printed as ``operation <TAB> JSON``; an error as
``operation <TAB> error <TAB> code <TAB> message <TAB> what to do`` (for an expected
error the last column must appear in its message or what to do). ``$prev`` in the
parameters is the previous step's result; ``@FILE`` reads them from a file. Values the JSON cannot carry are written as
markers: ``"$deep:N"`` a list nested N deep, ``"$big:N"`` a text of N characters,
``"$surrogate"`` a text that is not valid Unicode. A keyword the method does not take
is a ``TypeError`` (code ``type_error``). Long operations report every event to stderr
(``event <TAB> JSON``), and every result and error is also shown there by ``repr`` —
the package at its most verbose. A configuration the package refuses prints ``open
<TAB> error ...`` and exits 3; the first step that does not go as expected exits 1.
The Rust suite drives it against Samba (tests/it/operations.rs, tests/it/doors.rs).

usage: python steps.py CONFIG_FILE STEPS_FILE
"""

import json
import sys
import traceback
from typing import Any

import o365_essentials as o365


def expand(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("$deep:"):
            nested: Any = []
            for _ in range(int(value[6:])):
                nested = [nested]
            return nested
        if value.startswith("$big:"):
            return "x" * int(value[5:])
        if value == "$surrogate":
            return "bad\udcffname"
        return value
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


def event(e: Any) -> None:
    print(f"event\t{json.dumps(e)}", file=sys.stderr)


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: steps.py CONFIG_FILE STEPS_FILE", file=sys.stderr)
        return 2
    try:
        integration = o365.Integration(sys.argv[1])
    except o365.O365Error as e:
        print(f"open\terror\t{e.code_name}\t{e}\t{e.action}")
        print(repr(e), file=sys.stderr)
        traceback.print_exc()
        return 3
    table = {op["name"]: op for op in o365.OPERATIONS}
    prev = None
    with open(sys.argv[2], encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    for line in lines:
        fields = line.split("\t")
        op, params_text, want = fields[0], fields[1], fields[2]
        holds = fields[3] if len(fields) > 3 else ""
        if prev is not None:
            params_text = params_text.replace("$prev", prev)
        if params_text.startswith("@"):
            with open(params_text[1:], encoding="utf-8") as pf:
                params_text = pf.read()
        params = expand(json.loads(params_text))
        message = action = ""
        try:
            if op in table:
                method = getattr(integration, op)
                if table[op]["long_running"]:
                    result = method(progress=event, **params)
                else:
                    result = method(**params)
            else:
                result = integration.call(op, **params)
            print(f"{op} -> {result!r}", file=sys.stderr)
            got, text = "ok", json.dumps(o365.types.to_json(result), separators=(",", ":"))
        except o365.O365Error as e:
            got, text, message, action = e.code_name, "", str(e), e.action
            print(f"{op} -> {e!r}", file=sys.stderr)
            traceback.print_exc()
        except TypeError as e:
            got, text, message, action = "type_error", "", str(e), ""
            traceback.print_exc()
        if got != want:
            print(f"{op}: got {got} ({message if got != 'ok' else text}), want {want}", file=sys.stderr)
            return 1
        if got == "ok" and holds and holds not in text:
            print(f"{op}: the result lacks `{holds}`: {text}", file=sys.stderr)
            return 1
        if got != "ok" and holds and holds not in message and holds not in action:
            print(f"{op}: the error does not say `{holds}`: {message} ({action})", file=sys.stderr)
            return 1
        if got == "ok":
            print(f"{op}\t{text}")
            prev = text
        else:
            print(f"{op}\terror\t{got}\t{message}\t{action}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
