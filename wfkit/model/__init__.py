"""The model layer: what a workflow is, before anything runs.

Steps and their options (``_steps``), routes and their structured conditions (``_routes``), retry
policies and error classification (``_retry``), approval gates and tickets (``_approvals``), the
context a step receives (``_context``), merge rules for parallel writes (``_merge``), the compiled and
validated graph (``_graph``) and its drawings (``_graphview`` as SVG and text, ``_graphexport`` as
Mermaid and DOT), the workflow as data (``_spec``: the flow spec, YAML/JSON, checked against
``flow.schema.json``), run statuses (``_status``), the
frozen ``StepEvent`` every attempt emits (``_events``) and the processors events pass before any
sink (``_processors``), the error tree (``_errors``) and process-wide test switches (``_settings``).

Imports nothing else from wfkit. Public names are re-exported by ``wfkit``.
"""
