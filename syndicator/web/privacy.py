"""`/confidentialite`: the full privacy notice, in the pages' layout (templates/web/confidentialite.html)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from syndicator.privacy.notice import POLICY_PATH
from syndicator.web.pages import page

ROUTE = POLICY_PATH


async def privacy_page(request: Request) -> Response:
    """The notice made from config.yaml's `privacy:` (the page context's `privacy`)."""
    return page(request, "web/confidentialite.html")
