"""Where the owner's documentation is published: links in e-mails go here.

An e-mail is read on a phone, far from any clone of the repository, so a path such as
docs/notifications.md opens nothing; the same page on the project's public repository
does. Defined once: a fork that publishes its docs elsewhere changes DOCS_URL.
"""

from __future__ import annotations

DOCS_URL = "https://github.com/solar-monitor/solar-monitor/blob/main/docs"


def doc_link(page: str, anchor: str = "") -> str:
    """The published address of docs/<page>, e.g. doc_link('notifications.md', 'a-heartbeat')."""
    return f"{DOCS_URL}/{page}" + (f"#{anchor}" if anchor else "")
