"""The monthly e-mail digest: how the system did, at a glance.

`data` reads a month's figures from the store (`build_digest_data`), `render` turns them
into HTML, plain text and the daily CSV, and `send` delivers last month's digest exactly
once (the `digests` table) through the notification outbox.
"""

from typing import Any

_EXPORTS = {"DigestData": "data", "build_digest_data": "data", "parse_month": "data",
            "daily_csv": "render", "render_html": "render", "render_text": "render"}


def __getattr__(name: str) -> Any:
    """Import the heavy parts on first use: every `run` imports `digest.send`, but only
    the run that sends a digest needs the figures and the HTML."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"solar_monitor.digest.{_EXPORTS[name]}"), name)
    raise AttributeError(name)


__all__ = ["DigestData", "build_digest_data", "daily_csv", "parse_month", "render_html",
           "render_text"]
