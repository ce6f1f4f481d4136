"""Errors of the async jobs path: subclasses of kubemind's one error base, so the jobs routes
answer them through the same table as every other route."""

from __future__ import annotations

from http import HTTPStatus

from kubemind.errors import BackendUnavailable, KubemindError


class JobNotFound(KubemindError):
    """No job has this id."""

    status = HTTPStatus.NOT_FOUND


class BrokerUnavailable(BackendUnavailable):
    """The broker cannot take a job now: 503. Nothing was written, or (when the publish itself
    failed) the job is kept in the outbox and published once the broker is back."""
