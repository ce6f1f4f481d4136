"""`kubemind serve --only jobs-worker`: the jobs path is opt-in (it needs Postgres, Redis and
RabbitMQ), the worker forwards to the writer, and the sample call is runnable Python."""

from __future__ import annotations

from kubemind.local.services import local_services


def test_jobs_services_are_opt_in_and_wired() -> None:
    services = {service.name: service for service in local_services()}

    assert services["jobs"].opt_in and services["jobs-worker"].opt_in
    assert services["jobs-worker"].forwards_to == "jobs"
    assert not any(service.opt_in for name, service in services.items() if not name.startswith("jobs"))


def test_jobs_sample_call_is_python() -> None:
    sample = {service.name: service for service in local_services()}["jobs"].sample_call("http://127.0.0.1:1", "127.0.0.1:2")
    source = sample.split("<<'PY'\n", 1)[1].rsplit("\nPY", 1)[0]

    compile(source, "jobs-sample", "exec")
    assert "verify(" in source and "/v2/models/simple/jobs" in source
