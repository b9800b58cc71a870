"""The dataset checks, one module per family, each registered by name
(``registry.register``) and run by ``core.health.check``: ``classes`` (class sizes and
balance), ``images`` (CleanVision and imori's pixel checks), ``features`` (near duplicates
by pretrained features, label issues by cleanlab). CleanVision's ``issue_managers`` are
the model. This package's ``__init__`` imports nothing."""
