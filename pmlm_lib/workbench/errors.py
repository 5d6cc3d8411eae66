"""The workbench's one error type for a run that cannot go on; its message says what to do."""


class PipelineError(RuntimeError):
    """A notebook failed or the run was asked for something impossible; the message says what to do."""
