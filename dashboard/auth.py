"""Who may use the dashboard: anyone on this machine by default (it listens on localhost
only), a password or an OIDC login when it is shared.

- ``IMORI_DASHBOARD_PASSWORD``: ask for this password once per browser session.
- ``IMORI_DASHBOARD_AUTH=oidc``: require Streamlit's ``st.login`` (configure the provider
  in ``.streamlit/secrets.toml``, section ``[auth]``; see README, "Sharing the dashboard").

Secrets come from the environment or Streamlit's secrets file, never from the code.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st


def require_login() -> bool:
    """True when the visitor may see the pages; otherwise draws the login and returns False."""
    if os.environ.get("IMORI_DASHBOARD_AUTH", "").lower() == "oidc":
        if st.user.is_logged_in:
            with st.sidebar:
                st.caption(f"signed in as {st.user.get('email') or st.user.get('name') or 'you'}")
                st.button("Log out", on_click=st.logout)
            return True
        st.title("imori")
        st.write("This dashboard is shared: sign in to use it.")
        st.button("Log in", on_click=st.login, type="primary")
        return False
    password = os.environ.get("IMORI_DASHBOARD_PASSWORD")
    if not password or st.session_state.get("imori_authenticated"):
        return True
    st.title("imori")
    with st.form("login"):
        given = st.text_input("Password", type="password", key="imori_password")
        if st.form_submit_button("Enter", type="primary"):
            if hmac.compare_digest(given.encode(), password.encode()):
                st.session_state["imori_authenticated"] = True
                st.session_state.pop("imori_password", None)
                st.rerun()
            st.error("wrong password")
    return False
