# Run by IPython when a `wfkit replay` kernel starts (it is the kernel's $PYTHONSTARTUP), in the
# notebook's own namespace: so it defines no name, not even a docstring's __doc__.
__import__("wfkit.replay._kernel", fromlist=["setup"]).setup()
