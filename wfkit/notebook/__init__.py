"""The notebook layer: how runs, workflows and tickets look in Jupyter.

``_display`` renders runs as text and HTML (and is the renderer the engine's ``Run`` is handed),
``_widgets`` holds the live ipywidgets (run view, approval panels, the workspace's open tickets,
public as ``wfkit.widgets``), ``_pending`` lists a workspace's open tickets. ``_builder`` is the
visual flow builder's kernel side (palette, validation, Save) and ``_builderwidget`` its anywidget
(``wf.edit``; the front end is bundled in ``static/``, built from ``js/``). Uses the engine's
public ``Run`` API only.
"""
