"""A run's statuses, one word each, shared by the loop, the records and every view.

A run is ``queued`` until a worker claims it, ``running`` while it trains, then one of
:data:`FINISHED`. A running run whose cancel was requested stays ``running`` (with
``cancel_requested``) until its worker stops it and records ``cancelled``; one that a
worker's shutdown interrupts goes back to ``queued``.
"""

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)

# A job (``core.jobs``) has a run's statuses and one more: ``interrupted``, for a job that
# no worker can take up any more (queued or running when an upgrade changed the queue).
INTERRUPTED = "interrupted"
JOB_STATUSES = (*STATUSES, INTERRUPTED)
JOB_FINISHED = (*FINISHED, INTERRUPTED)
