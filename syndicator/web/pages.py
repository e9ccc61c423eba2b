"""The web app's pages: what every handler shares, French HTML pages from `templates/web/`, CSRF.

Pages are Jinja2 templates under `web/` in the same environment as the emails
(syndicator/templating.py), so an admin overrides `templates/web/base.html` like any other
template. `page()` renders one with the site, the request and `csrf_field()` in its context,
and adds the headers every page wants: not cached (pages hold personal links), never framed
(a hidden unsubscribe button would be a clickjacking target), no Referer sent (tokens sit in
the URLs), and a Content-Security-Policy letting nothing load but the page's own `<style>`.

CSRF is the signed double-submit pattern, stateless: the first page holding a form sets a
random value in a cookie, and each form carries that value signed with the app's secret. A
POST is accepted only when its field verifies and matches its cookie; another site can make
a browser send the cookie, but it can neither read it nor sign a value of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from syndicator.addresses import as_typed
from syndicator.config.model import Config
from syndicator.db.store import Store
from syndicator.db.tokens import secret_keys
from syndicator.privacy.notice import notice
from syndicator.taxonomy.territoires import Hierarchy
from syndicator.templating import environment
from syndicator.web.limits import cookie, read_form

CSRF_COOKIE = "syndicator_csrf"
CSRF_FIELD = "csrf_token"
_COOKIE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
PAGE_HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
# Nothing loads but the page's own <style> blocks, allowed by their hashes (`style_policy`).
CSP = "default-src 'none'; style-src {styles}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.DOTALL | re.IGNORECASE)

# What each error status tells the visitor: a title and a sentence, never a detail of ours.
ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("Lien non valide", "Ce lien n’est pas valide : il a peut-être été coupé ou modifié. "
          "Copiez-le en entier depuis le message reçu, ou utilisez le lien d’un message plus récent."),
    403: ("Formulaire expiré", "Ce formulaire a expiré, ou votre navigateur refuse les cookies. "
          "Rechargez la page, puis envoyez-le de nouveau."),
    408: ("Envoi trop lent", "Le formulaire est arrivé trop lentement. Envoyez-le de nouveau."),
    404: ("Page introuvable", "Il n’y a pas de page à cette adresse."),
    405: ("Action impossible", "Cette page ne permet pas cette action."),
    413: ("Envoi trop volumineux", "Le formulaire envoyé est trop volumineux."),
    431: ("Demande trop volumineuse", "Votre navigateur a envoyé des en-têtes trop volumineux, "
          "souvent des cookies trop nombreux. Effacez les cookies de ce site, puis réessayez."),
    429: ("Trop de demandes", "Trop de demandes ont été faites depuis votre connexion. Réessayez plus tard."),
    500: ("Erreur du serveur", "Une erreur est survenue de notre côté. Réessayez dans quelques minutes."),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class WebState:
    """Everything the handlers share, made once when the app is created."""

    config: Config
    store: Store
    env: Environment  # templates: admins' first, then the shipped ones
    hierarchy: Hierarchy  # the territoires, with config.yaml's additions
    keys: list[str]  # signing secrets, oldest first (syndicator/db/tokens.py)
    csrf: URLSafeSerializer

    @classmethod
    def build(cls, config: Config, store: Store) -> WebState:
        keys = secret_keys(store)
        hierarchy, _ = Hierarchy.load(config.territoires)
        return cls(
            config=config,
            store=store,
            env=environment(config.templates_path, config.site.zone),
            hierarchy=hierarchy,
            keys=keys,
            csrf=URLSafeSerializer(keys, salt="syndicator.csrf"),
        )


def web_state(request: Request) -> WebState:
    """The app's shared state (set by `syndicator.web.app.create_app`)."""
    state: WebState = request.app.state.web
    return state


class PageError(HTTPException):
    """An error shown as a French page; `title` and `message` default to `ERRORS[status]`."""

    def __init__(self, status: int, title: str | None = None, message: str | None = None) -> None:
        default = ERRORS.get(status, ERRORS[500])
        super().__init__(status, detail=title or default[0])
        self.title = title or default[0]
        self.message = message or default[1]


def _csrf_value(request: Request) -> str:
    """This browser's CSRF cookie value; a new one (set by `page()`) when it has none."""
    new: str | None = getattr(request.state, "csrf_new", None)
    if new:
        return new
    value = cookie(request, CSRF_COOKIE) or ""
    if 32 <= len(value) <= 64 and set(value) <= _COOKIE_CHARS:
        return value
    request.state.csrf_new = value = secrets.token_urlsafe(32)
    return value


def csrf_token(request: Request) -> str:
    """The token a form must send back in its `csrf_token` field."""
    return str(web_state(request).csrf.dumps(_csrf_value(request)))


def csrf_field(request: Request) -> Markup:
    """The hidden input carrying the CSRF token, for inside a `<form method="post">`."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token(request))


async def verified_form(request: Request) -> FormData:
    """The posted form, once its CSRF token is checked; else `PageError(403)`."""
    form = await read_form(request)
    token, sent = form.get(CSRF_FIELD), cookie(request, CSRF_COOKIE)
    if not isinstance(token, str) or not sent:
        raise PageError(403)
    try:
        signed = web_state(request).csrf.loads(token)
    except BadSignature:
        raise PageError(403) from None
    if not isinstance(signed, str) or not hmac.compare_digest(signed.encode(), sent.encode()):
        raise PageError(403)
    return form


def style_policy(html: str) -> str:
    """The Content-Security-Policy of a page: nothing but its own inline styles, by hash, so
    that an admin's edited template keeps its styles and an injected one gets none."""
    hashes = sorted({
        "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"
        for css in _STYLE.findall(html)
    })  # fmt: skip
    return CSP.format(styles=" ".join(hashes) or "'none'")


def page(request: Request, template: str, context: Mapping[str, Any] | None = None,
         status: int = 200) -> HTMLResponse:  # fmt: skip
    """Render `templates/<template>` (e.g. `web/unsubscribe.html`) as a French page.

    Its context holds `site` (config.yaml's), `privacy` (the RGPD notice), `request`,
    `csrf_field()` (call it inside each POST form) and `context`, whose `email` is shown with
    its domain as people type it (`mairie-évry.fr`, not the `xn--` form the store keeps)."""
    state = web_state(request)
    shown = dict(context or {})
    if isinstance(shown.get("email"), str):
        shown["email"] = as_typed(shown["email"])
    html = state.env.get_template(template).render(
        {"site": state.config.site, "request": request, "csrf_field": lambda: csrf_field(request),
         "privacy": notice(state.config), **shown}
    )  # fmt: skip
    headers = {**PAGE_HEADERS, "Content-Security-Policy": style_policy(html)}
    response = HTMLResponse(html, status_code=status, headers=headers)
    new: str | None = getattr(request.state, "csrf_new", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
        )
    return response


def error_page(request: Request, status: int, title: str | None = None,
               message: str | None = None) -> HTMLResponse:  # fmt: skip
    """The French page of an error status (`templates/web/error.html`): a title, a sentence."""
    default = ERRORS.get(status, ERRORS[500])
    return page(
        request,
        "web/error.html",
        {"status": status, "title": title or default[0], "message": message or default[1]},
        status=status,
    )
