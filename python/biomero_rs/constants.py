"""Status constants, as ``biomero.constants``."""


class workflow_status:  # noqa: N801 - the reference's name
    """The workflow status texts BIOMERO writes, as ``biomero.constants.workflow_status``."""

    INITIALIZING = "INITIALIZING"
    TRANSFERRING = "TRANSFERRING"
    CONVERTING = "CONVERTING"
    RETRIEVING = "RETRIEVING"
    IMPORTING = "IMPORTING"
    IMPORTED = "IMPORTED"
    POSTPROCESSING = "POSTPROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    RUNNING = "RUNNING"
    JOB_STATUS = "JOB_"
