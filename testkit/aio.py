"""Run a coroutine to completion from sync code, also when called inside a running loop
(async tests), by running it on a fresh loop in a worker thread."""

import asyncio
import concurrent.futures


def run(make_coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()
