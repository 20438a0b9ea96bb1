"""Replay: notebooks run headless under papermill and compared with their baselines
(``wfkit replay``). Imports the store layer only; the notebooks import the rest themselves.
"""
