"""Workflows of five shapes for the SIGKILL-and-resume tests (``test_durable_shapes.py``).

    python tests/shapeflows.py SHAPE WORKSPACE      # starts run "shape-run"
    wfkit resume shape-run --workflow shapeflows:SHAPE --workspace WORKSPACE

Every step execution appends ``run:LABEL`` to ``$SHAPES_LOG/ran.log`` (fsynced: the ground truth of
what ran; a label is the step's name, with ``[i]`` for a map item and ``#n`` for a loop iteration)
and appends its label to the state. The irreversible step of each shape appends ``effect:LABEL
key=KEY`` there too (its side effect) before anything else. When ``$SHAPES_KILL`` is a step's
label, that step, once it has logged itself, creates ``$SHAPES_LOG/ready`` and sleeps, so the test
can SIGKILL the process while that step runs.

Shapes: ``fanout`` (three parallel branches, then a join), ``cond`` (a route on a structured
condition; the join follows only the taken branch), ``mapped`` (a map over a list a step makes at
run time), ``sub`` (a sub-workflow with its irreversible step inside the child), ``sub_retried``
(``sub`` whose sub-workflow step retries an error of unknown kind once, with a new child run),
``loop`` (a state machine of three iterations, its irreversible step once per iteration),
``first`` (its irreversible step first: a crash there leaves the run no row of a step), ``chain``
(forty steps in a row, ``c01`` to ``c40``, each awaited and checkpointed by the scheduler itself).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import wfkit as wf

RUN_ID = "shape-run"


def _log(line: str) -> None:
    with (Path(os.environ["SHAPES_LOG"]) / "ran.log").open("a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _killed_here(label: str) -> bool:
    """Whether the test kills the process while ``label`` runs; if so, says it is ready."""
    if os.environ.get("SHAPES_KILL") != label:
        return False
    (Path(os.environ["SHAPES_LOG"]) / "ready").write_text(label)
    return True


def ran(label: str) -> None:
    """A synchronous step's record of its execution (it sleeps here when it is the one killed)."""
    _log(f"run:{label}")
    if _killed_here(label):
        time.sleep(300)


async def aran(label: str) -> None:
    """:func:`ran` for async steps."""
    _log(f"run:{label}")
    if _killed_here(label):
        await asyncio.sleep(300)


def sent(label: str, key: str) -> None:
    """An irreversible step's side effect, then its record of execution."""
    _log(f"effect:{label} key={key}")
    ran(label)


# Steps are of every kind the engine runs differently: async without ctx (awaited by the
# scheduler itself when it is the only step ready), async with ctx, and sync (a worker thread).


def _fanout() -> wf.Workflow:
    flow = wf.Workflow("shape-fanout", merge={"trail": wf.append, "branches": wf.union})

    @flow.step
    async def start(state: Any) -> dict[str, Any]:
        await aran("start")
        return {"trail": "start"}

    def branch(name: str) -> Any:
        def body(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
            ran(name)
            return {"branches": {name}}  # parallel writes: a set, so completion order does not matter

        return body

    for name in ("b1", "b2", "b3"):
        flow.step(branch(name), name=name)

    @flow.step
    async def join(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        await aran("join")
        return {"trail": "join", "joined": sorted(state["branches"])}

    @flow.step(irreversible=True)
    def notify(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        sent("notify", ctx.idempotency_key)
        return {"trail": "notify", "sent": [ctx.idempotency_key]}

    @flow.step
    async def end(state: Any) -> dict[str, Any]:
        await aran("end")
        return {"trail": "end"}

    flow.edge("start", "b1", "b2", "b3")
    for name in ("b1", "b2", "b3"):
        flow.edge(name, "join")
    flow.chain("join", "notify", "end")
    return flow


def _cond() -> wf.Workflow:
    flow = wf.Workflow("shape-cond", merge={"trail": wf.append}, inputs=["kind", "n"])

    @flow.step
    async def classify(state: Any) -> dict[str, Any]:
        await aran("classify")
        return {"trail": "classify"}

    @flow.step
    async def left(state: Any) -> dict[str, Any]:
        await aran("left")
        return {"trail": "left"}

    @flow.step
    async def right(state: Any) -> dict[str, Any]:
        await aran("right")
        return {"trail": "right"}

    @flow.step
    def join(state: Any) -> dict[str, Any]:
        ran("join")
        return {"trail": "join"}

    @flow.step(irreversible=True)
    async def notify(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        sent("notify", ctx.idempotency_key)
        return {"trail": "notify", "sent": [ctx.idempotency_key]}

    flow.route(
        "classify",
        (wf.when("kind", "eq", "left") & wf.when("n", "gt", 1)) >> wf.go("left"),
        default=wf.go("right"),
    )
    flow.edge("left", "join")
    flow.edge("right", "join")
    flow.chain("join", "notify")
    return flow


def _mapped() -> wf.Workflow:
    flow = wf.Workflow("shape-mapped", merge={"trail": wf.append}, inputs=["count"])

    @flow.step(writes=["trail", "items"])
    async def load(state: Any) -> dict[str, Any]:
        await aran("load")
        return {"trail": "load", "items": [f"doc{i}" for i in range(state["count"])]}

    @flow.map(over="items", into="results")
    async def each(item: str, ctx: wf.StepContext) -> str:
        await aran(f"each[{ctx.map_index}]")
        return f"each[{ctx.map_index}]:{item}"

    @flow.step
    def total(state: Any) -> dict[str, Any]:
        ran("total")
        return {"trail": "total", "total": len(state["results"])}

    @flow.step(irreversible=True)
    def notify(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        sent("notify", ctx.idempotency_key)
        return {"trail": "notify", "sent": [ctx.idempotency_key]}

    flow.chain("load", "each", "total", "notify")
    return flow


def _sub(retry: wf.RetryPolicy | None = None) -> wf.Workflow:
    child = wf.Workflow("shape-sub-child", merge={"trail": wf.append}, inputs=["text"])

    @child.step
    async def c1(state: Any) -> dict[str, Any]:
        await aran("c1")
        return {"trail": "c1", "upper": state["text"].upper()}

    @child.step
    def c2(state: Any) -> dict[str, Any]:
        ran("c2")
        return {"trail": "c2"}

    @child.step(irreversible=True)
    def send(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        sent("send", ctx.idempotency_key)
        return {"trail": "send", "sent": [ctx.idempotency_key]}

    child.chain("c1", "c2", "send")

    flow = wf.Workflow("shape-sub", merge={"trail": wf.append})

    @flow.step
    async def prepare(state: Any) -> dict[str, Any]:
        await aran("prepare")
        return {"trail": "prepare", "text": "hi"}

    flow.subflow(
        child,
        name="inner",
        inputs={"text": "text"},
        outputs={"child_trail": "trail", "upper": "upper", "sent": "sent"},
        retry=retry,
    )

    @flow.step
    def finish(state: Any) -> dict[str, Any]:
        ran("finish")
        return {"trail": "finish"}

    flow.chain("prepare", "inner", "finish")
    return flow


def _loop() -> wf.Workflow:
    flow = wf.Workflow("shape-loop", merge={"trail": wf.append, "sent": wf.append})

    @flow.step
    async def init(state: Any) -> dict[str, Any]:
        await aran("init")
        return {"trail": "init", "i": 0}

    @flow.step(max_visits=3)
    async def work(state: Any) -> dict[str, Any]:
        label = f"work#{state['i'] + 1}"
        await aran(label)
        return {"trail": label, "i": state["i"] + 1}

    @flow.step(irreversible=True)
    def send(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        label = f"send#{state['i']}"
        sent(label, ctx.idempotency_key)
        return {"trail": label, "sent": ctx.idempotency_key}

    @flow.step
    async def done(state: Any) -> dict[str, Any]:
        await aran("done")
        return {"trail": "done"}

    flow.chain("init", "work", "send")
    flow.route("send", wf.when("i", "lt", 3) >> wf.go("work"), default=wf.go("done"))
    return flow


def _first() -> wf.Workflow:
    flow = wf.Workflow("shape-first", merge={"trail": wf.append})

    @flow.step(irreversible=True)
    def send(state: Any, ctx: wf.StepContext) -> dict[str, Any]:
        sent("send", ctx.idempotency_key)
        return {"trail": "send", "sent": [ctx.idempotency_key]}

    @flow.step
    async def done(state: Any) -> dict[str, Any]:
        await aran("done")
        return {"trail": "done"}

    flow.chain("send", "done")
    return flow


def _chain() -> wf.Workflow:
    flow = wf.Workflow("shape-chain", merge={"trail": wf.append})
    names = [f"c{i:02d}" for i in range(1, 41)]

    def make(name: str) -> Any:
        async def step(state: Any) -> dict[str, Any]:
            await aran(name)
            return {"trail": name}

        return step

    for name in names:
        flow.step(make(name), name=name)
    flow.chain(*names)
    return flow


fanout = _fanout()
cond = _cond()
mapped = _mapped()
sub = _sub()
sub_retried = _sub(wf.RetryPolicy(max_retries=1, max_unknown_retries=1, base_delay=0.0))
loop = _loop()
first = _first()
chain = _chain()

INPUTS: dict[str, dict[str, Any]] = {
    "fanout": {},
    "cond": {"kind": "left", "n": 2},
    "mapped": {"count": 4},
    "sub": {},
    "sub_retried": {},
    "loop": {},
    "first": {},
    "chain": {},
}


def main(shape: str, workspace: str) -> None:
    flow = globals()[shape]
    flow.run(INPUTS[shape], run_id=RUN_ID, workspace=workspace)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
