"""`kubemind serve --only jobs-worker`: the jobs path is opt-in (it needs Postgres, Redis and
RabbitMQ), the worker forwards to the writer, and the sample call is runnable Python that uploads an
image to the CV model."""

from __future__ import annotations

from pathlib import Path

from kubemind.local.services import local_services


def test_jobs_services_are_opt_in_and_wired() -> None:
    services = {service.name: service for service in local_services()}

    assert services["jobs"].opt_in and services["jobs-worker"].opt_in
    assert services["jobs-worker"].forwards_to == "jobs"
    assert not any(service.opt_in for name, service in services.items() if not name.startswith("jobs"))


def _jobs_sample_source() -> str:
    sample = {service.name: service for service in local_services()}["jobs"].sample_call("http://127.0.0.1:1", "127.0.0.1:2")
    return sample.split("<<'PY'\n", 1)[1].rsplit("\nPY", 1)[0]


def test_jobs_sample_call_is_python() -> None:
    source = _jobs_sample_source()

    compile(source, "jobs-sample", "exec")
    assert "verify(" in source


def test_jobs_sample_call_uploads_an_image_to_a_model_that_takes_uploads() -> None:
    """The sample uploads a file (curl -F image=@...) that a fresh install has, to a model the
    writer under `kubemind serve` launches and that has the UINT8 pixel input uploads fill."""
    import matplotlib

    from kubemind_predictors.triton.repository import SHIPPED_MODELS
    from kubemind_workers.settings import JobWriterSettings

    writer = {service.name: service for service in local_services()}["jobs"]
    launched = writer.args[writer.args.index("--models") + 1].split(",")
    source = _jobs_sample_source()
    (model,) = [m for m in launched if f"http://127.0.0.1:1/v2/models/{m}/jobs" in source]
    pixels = [t for t in SHIPPED_MODELS[model].inputs if t.name == JobWriterSettings().image_input_name]

    assert [(t.datatype, t.shape[1:]) for t in pixels] == [("UINT8", (224, 224, 3))]
    assert "'-F', f'image=@{image};type=image/jpeg'" in source and "callback_url=http://127.0.0.1:" in source
    assert "pathlib.Path(matplotlib.get_data_path()) / 'sample_data' / 'grace_hopper.jpg'" in source
    assert (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").is_file()
