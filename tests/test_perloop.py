"""One resource per event loop, closed when that loop ends."""

from __future__ import annotations

import asyncio

from wfkit.llm._perloop import PerLoop


class Resource:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_one_resource_per_loop_closed_with_the_loop() -> None:
    """Within a loop the same resource comes back; when asyncio.run ends, it is closed."""
    made: list[Resource] = []

    def factory() -> Resource:
        made.append(Resource())
        return made[-1]

    pool: PerLoop[Resource] = PerLoop(factory, lambda r: r.aclose())

    async def use() -> Resource:
        first = await pool.get()
        assert first is await pool.get()
        return first

    a = asyncio.run(use())
    b = asyncio.run(use())
    assert a is not b
    assert a.closed
    assert b.closed
    assert 2 == len(made)


def test_aclose_closes_now_and_a_new_one_follows() -> None:
    """aclose() closes the running loop's resource at once; the next get() makes a fresh one."""
    pool: PerLoop[Resource] = PerLoop(Resource, lambda r: r.aclose())

    async def use() -> tuple[Resource, Resource]:
        first = await pool.get()
        await pool.aclose()
        return first, await pool.get()

    first, second = asyncio.run(use())
    assert first.closed
    assert first is not second
