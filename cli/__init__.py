"""The ``imori`` command, one module per command group (the way Aim lays out its CLI).

``main.py`` assembles the groups: ``train`` (train, predict, evaluate, export),
``queue`` (submit, cancel, clone, continue, wait, workers), ``records`` (runs, show,
delete), ``datasets`` (datasets, models, recipes) and ``serve`` (up, worker,
dashboard). ``options.py`` generates every run setting's flag from ``core.config``.

Heavy imports (torch, the dataset code, Celery) happen inside each command so that
``imori --help`` answers at once. A user error prints ``error: ...`` and exits with
status 2; a traceback means a bug.
"""
