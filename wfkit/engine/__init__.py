"""The engine layer: running a workflow.

``_workflow`` is what a user defines (``Workflow``: steps, edges, routes; run/start/resume);
``_engine`` schedules one run (an asyncio task) and acts on what ``_attempts`` (one step attempt:
retries, timeouts, classification) and ``_gates`` (checkpoints, intents of irreversible steps,
approval gates, replay on resume) decide; ``_run`` is the handle a user holds (status, state,
approve/reject/resume, subscribe). ``_loops`` finds an event loop without nest_asyncio, ``_mode``
tells interactive from headless.

Imports the model, store and logs layers (and the tool layer for ``ctx.tool``). What must call up
(display, live views) is handed in as a callable.
"""
