"""Jobs: every piece of work a worker does besides training, by kind.

A job is recorded (``core.records.jobs.create_job``: its kind, what it is about, its
parameters), sent to a worker (``worker.client.submit_job``) and run there by
``core.jobs.registry.run_job``, never in the dashboard's process. Its result (plain JSON)
or its error goes back to the job's row; ``imori jobs`` lists, shows and cancels them.

- ``kinds``: the kinds' names and descriptions (a leaf: nothing heavy, no cycle).
- ``registry``: finds the module of a kind and runs it.
- one module a kind: ``evaluate``, ``health``, ``calibrate``, ``lr_find``, ``export``,
  ``import_dataset``, ``diff``. Each has ``run(job: JobContext) -> dict``.

This package's ``__init__`` imports nothing, so that reading a kind's name never loads torch.
"""
