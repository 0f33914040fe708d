"""Changes come only from this origin, as JSON: the page's guard against request forgery.

A browser sends Airflow's login cookie with every request to this server, also one that another site's
page makes. Such a page can send a form or an empty POST without asking first, but not a JSON one: that
needs a CORS preflight, which this app never grants. Browsers also say where a request comes from, in
headers a page's script cannot set: ``Sec-Fetch-Site`` (recent browsers, over HTTPS or on localhost),
else ``Origin``. A request with neither (curl, a script with a token) is no browser acting for another site.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # no handler of these changes anything
THIS_ORIGIN = frozenset({"same-origin", "none"})  # "none": the user's own action, not another site's page


def same_origin_json(request: Request) -> None:
    """Every state-changing request: from this origin (else 403), with a JSON body (else 415)."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None:  # the browser's own verdict; a proxy may rewrite the Host an Origin is compared with
        foreign = site not in THIS_ORIGIN
    else:
        foreign = origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"
    if foreign:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "changes are accepted only from the Active Learning page itself, not from another site")
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "send changes as a JSON body, with Content-Type: application/json")
