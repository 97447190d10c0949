"""docs/configuration.md carries the reference generated from the models: it must not drift."""

from pathlib import Path

from garrison.config.reference import render_reference


def test_configuration_reference_is_current() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert render_reference() in doc, "run: garrison config reference, and paste into docs/configuration.md"
