"""The monthly e-mail digest: how the system did, at a glance.

`data` reads a month's figures from the store (`build_digest_data`), `render` turns them
into HTML, plain text and the daily CSV, and `send` delivers last month's digest exactly
once (the `digests` table) through the notification outbox.
"""

from solar_monitor.digest.data import DigestData, build_digest_data, parse_month
from solar_monitor.digest.render import daily_csv, render_html, render_text

__all__ = ["DigestData", "build_digest_data", "daily_csv", "parse_month", "render_html",
           "render_text"]
