"""A shared dashboard asks for its password before showing anything."""

from __future__ import annotations

from dashkit import APP


def test_password_gate(home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("IMORI_DASHBOARD_PASSWORD", "s3cret")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Password"]
    assert not at.dataframe and "New run" not in [h.value for h in at.title]  # no page behind it
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("wrong password" in e.value for e in at.error)
    assert "New run" not in [h.value for h in at.title]
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert not at.exception
    assert "New run" in [h.value for h in at.title]  # the default page, once in


def test_no_password_by_default(home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("IMORI_DASHBOARD_PASSWORD", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception and "New run" in [h.value for h in at.title]
