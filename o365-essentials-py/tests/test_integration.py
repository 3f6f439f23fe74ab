"""The integration from Python against the emulator binary: every operation of the table
as a method, progress, the GIL released, Ctrl-C, a raising callback, asyncio
cancellation, fork, exceptions that are also the builtins."""

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import threading
import time

import pytest

import o365_essentials as o365
from o365_essentials import aio

from conftest import config


def succeeded(results):
    items = results["items"] if isinstance(results, dict) else results.items
    return sum(1 for i in items if (i["outcome"] if isinstance(i, dict) else i.outcome) == "succeeded")


def test_every_operation_of_the_table_is_a_method_with_its_parameters():
    import inspect

    assert len(o365.OPERATIONS) >= 55
    for op in o365.OPERATIONS:
        for cls in (o365.Integration, aio.Integration):
            method = getattr(cls, op["name"], None)
            assert method is not None, f"{cls.__module__}.{op['name']} is missing"
            params = inspect.signature(method).parameters
            for field in op["fields"]:
                assert params[field].kind is inspect.Parameter.KEYWORD_ONLY, (op["name"], field)
    assert inspect.iscoroutinefunction(aio.Integration.plan_bulk_create)


def test_a_bulk_create_with_progress_and_the_gil_released(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path))
    with pytest.raises(TypeError, match="domian"):
        integration.plan_bulk_create(domian="x")
    integration.integrate()
    plan = integration.plan_bulk_create(usage_location="GB")
    assert len(plan.items) == 112
    seen = []
    caller = threading.get_ident()
    ticks = []
    stop = threading.Event()

    def other_thread():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    t = threading.Thread(target=other_thread)
    t.start()
    try:
        results = integration.apply_plan(plan=plan, progress=lambda e: seen.append((e, threading.get_ident())))
    finally:
        stop.set()
        t.join()
    assert succeeded(results) == 112
    assert len(ticks) > 10, "another Python thread ran during the call"
    assert all(tid == caller for _, tid in seen), "progress runs on the calling thread"
    assert any(e["event"] == "progress" for e, _ in seen)
    assert (tmp_path / f"bulk_create-{results.run_id.replace('-', '')}.json").exists()


def test_ctrl_c_stops_at_an_item_boundary_within_a_second_and_keeps_the_results(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path, people=300))
    integration.integrate()
    plan = integration.plan_bulk_create()
    sent = []

    def interrupt():
        time.sleep(0.5)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        integration.apply_plan(plan=plan)
    assert time.monotonic() - sent[0] < 1.0, "stopped within a second"
    files = list(tmp_path.glob("bulk_create-*.json"))
    assert len(files) == 1, "the results file was written"
    done = json.loads(files[0].read_text())
    created = succeeded(done)
    assert 0 < created < 312
    rest = integration.plan_bulk_create()
    assert len(rest.items) == 312 - created, "nothing lost, nothing twice"


def test_an_exception_in_the_callback_cancels_the_call_and_is_raised(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path))
    integration.integrate()
    plan = integration.plan_bulk_create()

    class Stop(Exception):
        pass

    def progress(event):
        if event["event"] == "item_finished":
            raise Stop("from the script")

    with pytest.raises(Stop):
        integration.apply_plan(plan=plan, progress=progress)
    assert len(integration.plan_bulk_create().items) > 0, "it stopped before the end"


def test_errors_are_the_packages_classes_and_the_builtins(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path))
    with pytest.raises(o365.NotIntegratedError) as e:
        integration.status()
    assert e.value.code_name == "not_integrated" and e.value.action
    with pytest.raises(ValueError):
        integration.plan_bulk_create(domain=5)
    with pytest.raises(o365.UnknownOperationError) as e:
        integration.call("no_such_operation")
    assert isinstance(e.value, LookupError)
    assert issubclass(o365.NotFoundError, LookupError)
    assert issubclass(o365.InvalidInputError, ValueError)
    assert issubclass(o365.RequestTimeoutError, TimeoutError)
    assert issubclass(o365.TransportError, ConnectionError)
    assert issubclass(o365.PermissionDeniedError, PermissionError)
    with pytest.raises(o365.InvalidConfigError):
        o365.Integration({"directory": "demo", "stroe": 1})


def test_text_that_is_not_unicode_is_refused_naming_its_field_not_its_content(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path))
    secret = "Sea-Glass-" + b"\xff".decode("utf-8", "surrogateescape")
    with pytest.raises(o365.InvalidInputError) as e:
        integration.call(
            "create_user_with_account",
            user={"sam_account_name": "ann.new", "user_principal_name": "ann.new@example.org",
                  "display_name": "Ann New"},
            password=secret,
        )
    assert "`password`" in str(e.value) and "surrogate" in str(e.value)
    assert "Sea-Glass" not in str(e.value) and "Sea-Glass" not in repr(e.value)
    with pytest.raises(o365.InvalidInputError, match=r"`users\[1\]`"):
        integration.call("plan_bulk_create", users=["a", b"\xfe".decode("utf-8", "surrogateescape")])
    # Non-ASCII text that is Unicode goes through as it is.
    with pytest.raises(o365.NotIntegratedError):
        integration.call(
            "create_user_with_account",
            user={"sam_account_name": "zoe.new", "user_principal_name": "zoe.new@example.org",
                  "display_name": "Zoë Nü"},
            password="Sea-Glass-Wide-7",
        )


def test_asyncio_cancellation_stops_the_engine_and_a_running_loop_works(emulator, tmp_path):
    integration = aio.Integration(config(emulator, tmp_path, people=300))

    async def go():
        await integration.integrate()
        plan = await integration.plan_bulk_create()
        events = []
        task = asyncio.ensure_future(integration.apply_plan(plan=plan, progress=events.append))
        while not any(e["event"] == "item_finished" for e in events):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rest = await integration.plan_bulk_create()
        assert 0 < len(rest.items) < 312
        results = await integration.apply_plan(plan=rest)
        assert succeeded(results) == len(rest.items)

    # Jupyter-style: the coroutine is driven from inside an already running loop.
    async def notebook():
        await go()

    asyncio.run(notebook())


def test_a_call_in_a_forked_child_raises_a_clear_error(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path))
    integration.integrate()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            integration.status()
            os.write(w, b"no error")
        except o365.ForkedProcessError:
            os.write(w, b"forked_process")
        except BaseException as e:  # noqa: BLE001
            os.write(w, repr(e).encode())
        os._exit(0)
    os.close(w)
    answer = os.read(r, 200).decode()
    os.waitpid(pid, 0)
    assert answer == "forked_process"


def test_the_sync_loop_reports_rounds_and_stops(emulator, tmp_path):
    integration = o365.Integration(config(emulator, tmp_path))
    integration.integrate()
    rounds = []
    loop = integration.start_sync_loop(interval=1, progress=lambda e: rounds.append(e))
    time.sleep(1.3)
    ran = loop.stop()
    assert ran >= 1
    assert [e["event"] for e in rounds].count("sync_round_finished") == ran
    stop = threading.Event()
    threading.Timer(1.2, stop.set).start()
    assert integration.run_sync_loop(interval=1, stop=stop) >= 1


def test_the_interpreter_exits_cleanly_with_a_sync_loop_running(emulator, tmp_path):
    script = (
        "import json, sys, o365_essentials as o365\n"
        f"i = o365.Integration(json.loads({json.dumps(json.dumps(config(emulator, tmp_path)))}))\n"
        "i.integrate()\n"
        "loop = i.start_sync_loop(interval=1, progress=lambda e: None)\n"
        "print('ok')\n"
    )
    out = subprocess.run([os.sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
