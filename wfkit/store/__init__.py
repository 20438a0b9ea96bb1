"""The store layer: where runs live on disk.

One SQLite file per workspace (WAL): runs, a checkpoint after every step, the journal of attempts
(``_journal``: one row per attempt, the durable record the step log is derived from), approval
tickets (``_tickets``), leases and the export ledger, all behind ``Store`` methods (``_store``): no
SQL outside this layer. ``_workspace`` is the user's handle on a folder of runs.

Imports only the model layer.
"""
