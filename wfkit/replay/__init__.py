"""Replay: notebooks run headless under papermill and compared with their baselines (``wfkit replay``,
``pytest --wfkit-replay``). Imports the store layer only; the notebooks import the rest themselves.

``_notebooks`` which notebooks (files, folders, globs) and where their baselines live;
``_parameters`` their parameters; ``_execute`` one notebook under papermill, in a kernel ``_kernel``
sets up (``_startup``); ``_signals`` what its runs did; ``_outputs`` what its cells showed;
``_compare`` against the baseline; ``_result`` and ``_console`` what is printed; ``_report`` the
HTML, JSON and JUnit files; ``_replay`` the whole command; ``_pytest_plugin`` the pytest items;
``_options`` what their command-line options take.
"""
