"""The engine layer: running a workflow.

``_workflow`` is what a user defines (``Workflow``: steps, edges, routes; run/start/resume) and
``_run`` the handle a user holds (status, state, approve/reject/resume, subscribe). One run is
an ``Execution`` (``_engine``): the scheduler, which composes three parts and acts on what they say:

- ``_attempts``: the attempt runner. Where a step attempt is born: runs one activation's
  attempts (timeouts, retries and backoff, error classification, the step cache ``_cache``, the
  checks on what a step returns). Knows nothing of routing or the store.
- ``_durability``: the durability layer, the only part that talks to the store: checkpoints and
  group-commit waits, journal rows, approval tickets and intents of irreversible steps (gates),
  leases, replay of a stopped run, the hand-over to the step-log exporter at the end.
- ``_stepevents``: how an attempt becomes a row (``EventMaker``) and who hears of it (``Outlet``:
  the run's events, the sinks, the live views that draw it).

Smaller pieces: ``_activations`` (the data the parts hand each other), ``_services`` (what
``ctx.llm``/``ctx.tool`` reach), ``_subflows`` (a step that runs a child workflow), ``_batch``
(``run_many``), ``_loops`` (an event loop without nest_asyncio), ``_mode`` (interactive or headless),
``_collector`` (the garbage collector's threshold while runs execute).

Imports the model, store and logs layers (and the tool layer for ``ctx.tool``). What must call up
(display, live views) is handed in as a callable.
"""
