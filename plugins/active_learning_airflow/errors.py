"""Errors that no retry can fix fail the task at once, with the domain's message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException


@contextmanager
def fail_without_retry() -> Iterator[None]:
    """Bad input (unknown project or model, invalid config, too little data, a refused Label Studio token,
    training parameters refused by us or by spaCy, a base model that
    cannot be used) is final; faults (Label Studio unreachable after the
    client's own retries, too) are retried."""
    from active_learning.deploy.deployment import DeployError
    from active_learning.sources.label_studio_client import LabelStudioAuthError
    from active_learning.labeling_config import LabelingConfigError
    from active_learning.preannotation.run import NoDeployedModelError
    from active_learning.registry import UntrustedModelError
    from active_learning.store import UnknownProjectError
    from active_learning.training.base_model import BaseModelError
    from active_learning.training.parameters import TrainingParameterError
    from active_learning.training.spacy_ner import SpacyConfigError
    from active_learning.training.steps import NotEnoughDataError

    try:
        yield
    except (DeployError, LabelStudioAuthError, LabelingConfigError, UnknownProjectError, NotEnoughDataError,
            NoDeployedModelError, UntrustedModelError, TrainingParameterError, SpacyConfigError, BaseModelError) as error:
        raise AirflowFailException(str(error)) from error
