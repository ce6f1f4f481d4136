"""Settings of the async path: what the job writer and the CV worker share, and each one's own."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubemind.settings import ComponentSettings
from kubemind_predictors.triton.settings import TritonPredictorSettings
from kubemind_transformers.image.settings import ImagePreparationSettings

KillPoint = Literal["", "after_infer", "after_store", "stall_after_infer"]


class JobPlumbingSettings(BaseSettings):
    """Where jobs live and travel: Postgres (truth), Redis (status cache), the broker."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    """Postgres DSN of the job tables (migrated at start); the default is a local Postgres's own
    database, which every install has: name your own anywhere else."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding job status with a TTL; a cache only: losing it loses nothing."""

    redis_prefix: str = "kubemind:job:"
    """Key prefix of the status cache."""

    status_ttl_seconds: int = Field(default=3600, gt=0)
    """How long a job's status stays cached in Redis."""

    broker: Literal["kafka", "rabbitmq", "cloudevents"] = "kafka"
    """Message broker of the job topic. cloudevents (workers only): Knative Eventing delivers the
    Kafka messages over HTTP, and the answer acknowledges them."""

    broker_url: str = "127.0.0.1:9092"
    """Kafka bootstrap servers (host:port,...), a RabbitMQ amqp:// URL, or for cloudevents the
    host:port the worker receives CloudEvents on."""

    topic: str = "cv-jobs"
    """Kafka topic or RabbitMQ queue of the jobs; dead letters go to `<topic>.dead`."""

    partitions: int = Field(default=4, gt=0)
    """Partitions of the Kafka topic when kubemind creates it (messages are keyed by job id)."""

    consumer_group: str = "kubemind-cv-workers"
    """Kafka consumer group of the CV workers."""

    callback_allow_list: list[str] = Field(default_factory=list)
    """Hosts or CIDR ranges a callback URL may resolve to although they are private, loopback or
    link-local (a receiver inside the cluster; the tests' local listener)."""


class JobWriterSettings(TritonPredictorSettings, JobPlumbingSettings, ImagePreparationSettings):
    """The Triton predictor with the async jobs routes: POST /v2/models/{model}/jobs and GET /v2/jobs/{id}.

    Image uploads are prepared with the image transformer's settings (image_size, resize_ratio,
    max_pixels): keep them equal to the transformer's so both paths give the same answer."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_JOBS_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    publish_timeout_seconds: float = Field(default=2.0, gt=0)
    """How long the writer waits for the broker to confirm a job's message before leaving it to
    the outbox relay (the job is already committed, so it is published later, not lost)."""

    database_pool_size: int = Field(default=16, gt=0)
    """Most Postgres connections of the writer: each submit holds one for its commits, so
    concurrent submits beyond it wait (a worker needs few: one statement per batch)."""

    relay_interval_seconds: float = Field(default=0.5, gt=0)
    """How often the outbox relay looks for committed jobs whose message is not yet published."""

    image_input_name: str = "input"
    """The model's UINT8 [n, image_size, image_size, 3] pixel input that an image upload fills
    (the image transformer's predictor_input_name); a model without it takes JSON jobs only."""

    requeue_after_seconds: float = Field(default=300.0, gt=0)
    """An unfinished job unchanged for this long has its message published again (the broker
    may have lost it); keep it well above the worker's inference deadline and retries."""


class CVWorkerSettings(ComponentSettings, JobPlumbingSettings):
    """The CV worker: consumes jobs in micro-batches, infers over grpc-v2, stores, acks, calls back."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEMIND_WORKER_",
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    http_port: int = Field(default=9090, ge=0, le=65535)
    """Port of the worker's Prometheus /metrics listener (0 picks a free port)."""

    predictor_host: str = "127.0.0.1:8081"
    """host:port of the v2 gRPC predictor (the Triton predictor or the image transformer)."""

    worker_id: str = ""
    """Name in the attempts table; default: host name and PID."""

    batch_size: int = Field(default=8, gt=0)
    """Most jobs in one micro-batch (one inference call when the model batches)."""

    batch_wait_seconds: float = Field(default=0.02, ge=0)
    """Longest wait for a micro-batch to fill once its first job arrived."""

    inference_timeout_seconds: float = Field(default=10.0, gt=0)
    """Deadline of one inference call, retries included."""

    max_attempts: int = Field(default=3, gt=0)
    """Inference tries per delivery (application errors) before the job is dead-lettered."""

    retry_backoff_seconds: float = Field(default=0.1, ge=0)
    """First delay between inference tries; doubles each try."""

    max_deliveries: int = Field(default=10, gt=0)
    """Claims of one job (each redelivery after a crash is one) before it is dead-lettered as a
    poison message that keeps killing workers."""

    webhook_secret: str = "whsec_a3ViZW1pbmQtbG9jYWwtd2ViaG9vay1zZWNyZXQ="
    """Standard Webhooks signing secret (`whsec_` + base64 key); set from a Secret on a cluster."""

    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    """Deadline of one webhook POST."""

    webhook_max_attempts: int = Field(default=6, gt=0)
    """Webhook attempts before the delivery is marked failed."""

    webhook_backoff_seconds: float = Field(default=0.5, gt=0)
    """First webhook retry delay; doubles each attempt, with full jitter."""

    webhook_max_backoff_seconds: float = Field(default=60.0, gt=0)
    """Cap of the webhook retry delay."""

    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    """How often the sender looks for due deliveries (it is also woken after each stored batch)."""

    kill_point: KillPoint = ""
    """Tests only: SIGKILL this worker at a failure window (after_infer, after_store), or
    stall_after_infer: drop the broker connection, wait until another worker has claimed the
    jobs (at most stall_seconds), then finish late."""

    kill_after_jobs: int = Field(default=0, ge=0)
    """Tests only: jobs to pass through the kill point before it fires."""

    stall_seconds: float = Field(default=5.0, ge=0)
    """Tests only: the longest stall_after_infer holds the stale attempt."""
