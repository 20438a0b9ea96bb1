"""The ``wfkit`` command line (``_cli``) and its demo (``_demo``): the top layer, free to use any other."""
