"""imori's core: pure PyTorch training, data, models, checkpoints and run records.

Nothing in this package imports Celery or Streamlit; the worker and the dashboard
build on it, never the other way round.
"""

__version__ = "0.1.0"
