"""`samvad.uncancelled`: clean-up that the server's cancellation of a call must not cut short."""

import asyncio

import pytest

from samvad.uncancelled import uncancelled

pytestmark = pytest.mark.unit


async def test_the_work_ends_though_the_task_is_cancelled_twice_then_the_cancellation_is_raised():
    done = []

    async def work():
        await asyncio.sleep(0.1)
        done.append(True)
        return 7

    task = asyncio.create_task(uncancelled(work()))
    for _ in range(2):
        await asyncio.sleep(0.02)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == [True]


async def test_its_result_and_its_failure_come_back_as_usual():
    async def fine():
        return 7

    async def broken():
        raise ValueError("no")

    assert await uncancelled(fine()) == 7
    with pytest.raises(ValueError):
        await uncancelled(broken())


async def test_its_calls_are_not_children_of_the_request_being_cancelled():
    """Serve cancels the deployment calls a cancelled request made, found through its request
    context: the work runs outside it, so its calls (recording what was heard) are not cut."""
    from ray.serve import context

    context._serve_request_context.set(
        context._RequestContext(request_id="call", _internal_request_id="r1", cancel_on_parent_request_cancel=True)
    )

    async def work():
        return context._get_serve_request_context()

    seen = await uncancelled(work())
    assert seen._internal_request_id == "" and not seen.cancel_on_parent_request_cancel
    assert context._get_serve_request_context()._internal_request_id == "r1"  # the caller's is kept
