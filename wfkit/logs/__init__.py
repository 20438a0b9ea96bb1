"""The step-log layer: one parquet row per attempt, and the analysis built on it.

``_steplog`` exports journal rows to atomic parquet segments and reads the dataset back;
``_analysis`` is the ``df.wf`` accessor (latency, failures, retries, cost), ``_plots`` draws,
``_advice`` proposes timeouts (with a Monte Carlo check), ``_report`` writes the HTML report.

Imports the model and store layers only.
"""
