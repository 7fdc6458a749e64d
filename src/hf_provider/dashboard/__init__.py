"""The dashboard page served at /dashboard: hand-written HTML, CSS and canvas charts, no external assets."""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
