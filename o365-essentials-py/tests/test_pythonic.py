"""Python as Python developers expect it: logging, close() and context managers, a
cancellation that keeps its partial results without shadowing asyncio's, and results
that say what was done (the licences of a created user)."""

import asyncio
import logging
import warnings

import pytest

import o365_essentials as o365
from o365_essentials import aio

from conftest import config, start_emulator


@pytest.fixture()
def throttled_emulator(tmp_path):
    """The emulator throttling writes hard: five per app per second."""
    proc, info = start_emulator(
        tmp_path,
        throttling={"enabled": True, "app_tenant_writes": 5, "app_tenant_write_window_secs": 1.0},
    )
    yield info
    proc.terminate()
    proc.wait(timeout=10)


def test_throttled_answers_and_retries_at_debug_warnings_at_warning(throttled_emulator, tmp_path, caplog):
    settings = config(throttled_emulator, tmp_path, people=12)
    # A results folder that is a file: the run's results file cannot be written, which
    # the engine reports as a warning (the run itself succeeds).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings["results_folder"] = str(blocker)
    caplog.set_level(logging.DEBUG, logger="o365_essentials")
    with o365.Integration(settings) as integration:
        integration.integrate()
        plan = integration.plan_bulk_create(usage_location="GB")
        results = integration.apply_plan(plan=plan)
    assert all(r.outcome == "succeeded" for r in results.items), results.items
    mine = [r for r in caplog.records if r.name.startswith("o365_essentials")]
    throttled = [r for r in mine if r.name == "o365_essentials.throttling"]
    assert throttled, "each throttled answer is logged"
    assert all(r.levelno == logging.DEBUG and "429" in r.getMessage() for r in throttled)
    warned = [r for r in mine if r.levelno == logging.WARNING]
    assert any("results" in r.getMessage() for r in warned), [r.getMessage() for r in mine][-5:]
    assert any(r.name == "o365_essentials.events" and r.levelno == logging.DEBUG for r in mine)
    secret = throttled_emulator["client_secret"]
    assert not any(secret in r.getMessage() for r in caplog.records), "no secret in a log record"
    assert logging.getLogger("o365_essentials").handlers, "a NullHandler, as a library has"


def test_close_and_with_release_the_integration(emulator, tmp_path):
    with o365.Integration(config(emulator, tmp_path)) as integration:
        integration.integrate()
        loop = integration.start_sync_loop(interval=60)
        assert not integration.closed
    assert integration.closed
    assert loop.stop() == 0, "close() stopped the loop it started"
    with pytest.raises(o365.InvalidHandleError, match="closed"):
        integration.status()
    integration.close()  # twice is nothing
    # The store is released: another integration opens it at once.
    with o365.Integration(config(emulator, tmp_path)) as again:
        assert again.status().enabled


def test_async_with_closes_the_asyncio_integration(emulator, tmp_path):
    async def go():
        async with aio.Integration(config(emulator, tmp_path)) as integration:
            await integration.integrate()
            assert (await integration.status()).enabled
        return integration

    integration = asyncio.run(go())
    assert integration.closed
    with pytest.raises(o365.InvalidHandleError):
        asyncio.run(integration.status())


def test_a_cancelled_run_raises_with_its_partial_results_and_run_id(emulator, tmp_path):
    with o365.Integration(config(emulator, tmp_path, people=300)) as integration:
        integration.integrate()
        plan = integration.plan_bulk_create()
        token = o365.CancelToken()

        def progress(event):
            if event["event"] == "item_finished":
                token.cancel()

        with pytest.raises(o365.OperationCancelledError) as raised:
            integration.apply_plan(plan=plan, progress=progress, cancel=token)
        e = raised.value
        assert isinstance(e.partial, o365.RunResults), type(e.partial)
        assert e.run_id == e.partial.run_id and len(e.run_id) == 36
        outcomes = [i.outcome for i in e.partial.items]
        assert o365.Outcome.CANCELLED in outcomes
        done = sum(1 for o in outcomes if o == "succeeded")
        assert 0 < done < len(plan.items)
        assert len(integration.plan_bulk_create().items) == len(plan.items) - done


def test_asyncio_cancel_token_gives_the_partial_results_too(emulator, tmp_path):
    async def go():
        async with aio.Integration(config(emulator, tmp_path, people=300)) as integration:
            await integration.integrate()
            plan = await integration.plan_bulk_create()
            token = o365.CancelToken()

            def progress(event):
                if event["event"] == "item_finished":
                    token.cancel()

            with pytest.raises(o365.OperationCancelledError) as raised:
                await integration.apply_plan(plan=plan, progress=progress, cancel=token)
            assert isinstance(raised.value.partial, o365.RunResults)
            assert raised.value.run_id == raised.value.partial.run_id

    asyncio.run(go())


def test_the_cancellation_class_does_not_shadow_asyncios_on_star_import():
    names = {}
    exec("from asyncio import *\nfrom o365_essentials import *", names)
    assert names["CancelledError"] is asyncio.CancelledError
    assert names["OperationCancelledError"] is o365.OperationCancelledError
    assert "CancelledError" not in o365.__all__
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        old = o365.CancelledError
    assert old is o365.OperationCancelledError
    assert any(issubclass(w.category, DeprecationWarning) for w in seen)
    assert issubclass(o365.OperationCancelledError, o365.O365OperationError)


def test_a_created_user_says_which_licences_it_got(emulator, tmp_path):
    with o365.Integration(config(emulator, tmp_path)) as integration:
        integration.integrate()
        sku = integration.licences()[0].sku_id
        created = integration.create_user_with_account(
            user={"sam_account_name": "nora.nash", "user_principal_name": "nora.nash@contoso.com",
                  "display_name": "Nora Nash"},
            password="Sea-Glass-Wide-7",
            usage_location="GB",
            licences=[{"sku_id": sku}],
        )
        assert created.online.assigned_skus == [sku]
        plain = integration.create_user_with_account(
            user={"sam_account_name": "omar.ode", "user_principal_name": "omar.ode@contoso.com",
                  "display_name": "Omar Ode"},
            password="Sea-Glass-Wide-8",
            licences=[],
        )
        assert plain.online.assigned_skus == [], "no licence is an empty list, not None"
