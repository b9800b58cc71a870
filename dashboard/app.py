"""imori's dashboard: the frame shared by every page.

    streamlit run dashboard/app.py      (or: imori up / imori dashboard)

The pages are the files in ``app_pages/``; what they share is in the modules beside this one (``fmt``, ``nav``, ``live``,
``charts``, ``uploads``, ``loading``), one idea each.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this folder on sys.path, not the project: make `dashboard`,
# `core` and `worker` importable from a plain checkout too.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import fmt, live, nav  # noqa: E402
from dashboard.auth import require_login  # noqa: E402

st.set_page_config(page_title="imori", page_icon="🦎", layout="wide")
if not require_login():
    st.stop()

page = st.navigation(
    {
        "Train": [
            st.Page(nav.NEW_RUN, title="New run", icon=":material/add_circle:", default=True),
            st.Page(nav.RUNS, title="Runs", icon=":material/format_list_bulleted:"),
            st.Page(nav.RUN_DETAIL, title="Run detail", icon=":material/monitoring:"),
            st.Page(nav.COMPARE, title="Compare", icon=":material/compare_arrows:"),
        ],
        "Use": [
            st.Page(nav.PREDICT, title="Predict", icon=":material/image_search:"),
            st.Page(nav.DATASETS, title="Datasets", icon=":material/photo_library:"),
        ],
    }
)
live.sidebar_status()
with fmt.user_errors():
    page.run()
