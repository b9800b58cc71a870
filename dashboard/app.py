"""imori's dashboard: the frame shared by every page.

    streamlit run dashboard/app.py      (or: imori up / imori dashboard)

The pages are the files in ``app_pages/``; what they share is in ``widgets.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this folder on sys.path, not the project: make `dashboard.widgets`,
# `core` and `worker` importable from a plain checkout too.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import widgets  # noqa: E402
from dashboard.auth import require_login  # noqa: E402

st.set_page_config(page_title="imori", page_icon="🦎", layout="wide")
if not require_login():
    st.stop()

page = st.navigation(
    {
        "Train": [
            st.Page(widgets.NEW_RUN, title="New run", icon=":material/add_circle:", default=True),
            st.Page(widgets.RUNS, title="Runs", icon=":material/format_list_bulleted:"),
            st.Page(widgets.RUN_DETAIL, title="Run detail", icon=":material/monitoring:"),
            st.Page(widgets.COMPARE, title="Compare", icon=":material/compare_arrows:"),
        ],
        "Use": [
            st.Page(widgets.PREDICT, title="Predict", icon=":material/image_search:"),
            st.Page(widgets.DATASETS, title="Datasets", icon=":material/photo_library:"),
        ],
    }
)
widgets.sidebar_status()
with widgets.user_errors():
    page.run()
