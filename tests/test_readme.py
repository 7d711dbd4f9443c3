from __future__ import annotations

from pathlib import Path

from fastpush.config import render_reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_readme_carries_the_current_config_reference() -> None:
    # Regenerate with: python -m fastpush.config README.md
    assert render_reference_markdown() in (ROOT / "README.md").read_text("utf-8")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    command = 'pip install ".[test]" && pytest'
    assert command in readme
    assert command in ci.splitlines()
