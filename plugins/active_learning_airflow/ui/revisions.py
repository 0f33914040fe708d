"""How the page's changes become config revisions: written by the Airflow user with a reason that
names the page, and only onto the revision the form was rendered from.

The domain call compares and sets the revision inside its own write, so a change made in between by
anyone (another tab, the CLI, a training) is never overwritten: the form is refused with 409 instead,
naming the revision that is live now so that the page can reload it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from fastapi import HTTPException, status

if TYPE_CHECKING:
    from active_learning.backends import Backends

PAGE = "Active Learning page"


def reason(change: str) -> str:
    """The revision's reason, naming the page (the CLI's and the DAGs' revisions name themselves)."""
    return f"{change} ({PAGE})"


def stale(name: str, form_revision: int, live: int) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        {"message": f"project {name!r} changed after revision {form_revision} was shown (revision {live} is live "
                    "now): reload and apply your change again", "live_revision": live},
    )


@contextmanager
def refused_as_stale(backends: Backends, name: str, form_revision: int) -> Iterator[None]:
    """The domain's compare-and-set refused the form: 409, naming the revision that is live instead."""
    from active_learning.store import ConfigConflictError

    try:
        yield
    except ConfigConflictError:
        raise stale(name, form_revision, backends.store.configs.read(name).revision) from None
