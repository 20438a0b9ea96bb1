# Run by IPython when a `wfkit replay` kernel starts (it is the kernel's $PYTHONSTARTUP), in the
# notebook's own namespace: so it leaves no name there (the function below is deleted once run), not
# even a docstring's __doc__.


def _wfkit_replay_kernel_setup() -> None:
    # How the setup went is written to the file $WFKIT_REPLAY_SETUP_REPORT names, which the replay
    # reads: a failure fails the notebook naming its cause, where the kernel's log alone would leave
    # the user with differences in what cells showed. The standard library only, up to the import of
    # wfkit: wfkit itself may be what this kernel cannot import.
    import json
    import os
    import traceback

    report = os.environ.pop("WFKIT_REPLAY_SETUP_REPORT", "")
    said: dict[str, object] = {"stage": "wfkit"}
    try:
        from wfkit.replay import _kernel

        _kernel.setup()
        said["stage"] = "user"
        _kernel.run_user_startup()
        said = {"ok": True}
    except BaseException as exc:
        said.update(exception=type(exc).__name__, message=str(exc), traceback=traceback.format_exc())
        # The innermost frame in a file (not <frozen importlib>): where to look.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
        if frames:
            said.update(file=frames[-1].filename, line=frames[-1].lineno)
        raise  # IPython writes it to the kernel's log, as before
    finally:
        if report:
            with open(report, "w", encoding="utf-8") as file:
                json.dump(said, file)


try:
    _wfkit_replay_kernel_setup()
finally:
    del _wfkit_replay_kernel_setup
