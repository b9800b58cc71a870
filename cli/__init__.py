"""The ``imori`` command, one module per command group (the way Aim lays out its CLI).

``main.py`` assembles the groups: ``train`` (train, predict, evaluate, export),
``queue`` (submit, cancel, clone, continue, wait, workers), ``records`` (runs, show,
delete), ``jobs`` (jobs, jobs show, jobs cancel), ``datasets`` (datasets
list|import|check|fix|delete, models, recipes) and ``serve`` (up, worker, dashboard).
``options.py`` generates every run setting's flag from ``core.config``.

A module imports imori's light modules at its top. Inside a command, and only there, it
imports what ``imori --help`` must not pay for: torch and the modules that load it (the
dataset code, models, training, export), and the records and the queue (SQLAlchemy and
Celery: 0.35 s or more). ``imori --help`` imports in about 0.1 s, and
``tests/cli/test_light_commands.py`` checks that the commands that only read records or
talk to the queue load no torch. A user error prints ``error: ...`` and exits with
status 2; a traceback means a bug.
"""
