"""The deploy code's refusals as HTTP errors: the request named a model or a revision it cannot use
(400), or the config it would make live does not validate (422, with every problem for the form)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException, status


@contextmanager
def refused_request() -> Iterator[None]:
    """No such model, another project's, no such revision: 400 with the deploy code's message."""
    from active_learning.deploy.deployment import DeployError

    try:
        yield
    except DeployError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None


@contextmanager
def refused_config() -> Iterator[None]:
    """A deploy or rollback the deploy code refused: an invalid resulting config (422), else 400."""
    from active_learning.deploy.deployment import ConfigValidationError

    with refused_request():
        try:
            yield
        except ConfigValidationError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                {"message": str(error), "problems": [str(p) for p in error.problems]}) from None
