"""Celery configuration, built from :mod:`pipeline.settings` when Celery first needs it.

Delivery semantics, chosen on purpose (the database row is the source of truth; see
``pipeline/jobs.py``):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after its
  task finished, and a worker child killed mid-task (OOM, ``kill -9``) puts it back on the queue,
  so work is at-least-once instead of at-most-once. Claims in the database make the second
  delivery harmless.
- ``worker_prefetch_multiplier = 1``: a worker reserves one message per process, so a long
  transcription does not hold a backlog hostage while other workers idle.
- ``task_time_limit`` (hard) and ``task_soft_time_limit`` stay below the Redis
  ``visibility_timeout``: otherwise Redis hands a still-running task to a second worker.
- ``worker_max_memory_per_child``: a child whose resident memory grew past the bound (model
  allocator growth, fragmentation) is replaced after its current task.
"""

from __future__ import annotations

from kombu import Exchange, Queue

from db.models import Stage
from pipeline.settings import get_settings

_settings = get_settings()

broker_url = _settings.broker_url.get_secret_value()
result_backend = _settings.result_backend.get_secret_value()
broker_connection_retry_on_startup = True
broker_transport_options = {"visibility_timeout": _settings.visibility_timeout}
result_backend_transport_options = {"visibility_timeout": _settings.visibility_timeout}

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True  # outcomes live in PostgreSQL; Redis only carries messages
result_expires = 3600

QUEUES = tuple(stage.value for stage in Stage)  # one queue per stage, named after it
# One direct exchange per queue, routing key = queue name: `-Q transcribe` gets only those.
task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES)
task_default_queue = "ingest"
task_default_exchange = "ingest"
task_default_routing_key = "ingest"
task_routes = {
    "teleai.ingest": {"queue": "ingest"},
    "teleai.ingest_batch": {"queue": "ingest"},  # several files' ingest (workers.submit)
    "teleai.transcribe": {"queue": "transcribe"},
    "teleai.analyze": {"queue": "analyze"},
    # Light periodic jobs share the light ingest pool.
    "teleai.reap": {"queue": "ingest"},
    "teleai.refresh_analytics": {"queue": "ingest"},
    "teleai.expire_sessions": {"queue": "ingest"},
}

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_time_limit = _settings.task_time_limit
task_soft_time_limit = max(_settings.task_time_limit - 30, 1)
worker_max_memory_per_child = 4_000_000  # KiB: ~4 GB, far above one model's working set
# Pool children load their models at start (pipeline.warmup), which can outlast the default
# 4 s start-up timeout; Celery logs "ready." before they finish (wait for "models_warmed_up").
worker_proc_alive_timeout = 180.0
worker_send_task_events = True  # `teleai stats` and Flower see task progress
task_send_sent_event = True

# Only for `celery beat`, which is optional: every worker runs these jobs itself, one elected
# worker at a time (workers.periodic). A beat running as well is harmless (the sweep is safe to
# run twice at once); set TELEAI_PERIODIC_JOBS=false on the workers to leave the jobs to beat.
beat_schedule = {
    "reap-orphans": {"task": "teleai.reap", "schedule": float(_settings.reaper_interval_seconds)},
    "refresh-analytics": {
        "task": "teleai.refresh_analytics",
        "schedule": float(_settings.analytics_refresh_seconds),
    },
    "expire-sessions": {"task": "teleai.expire_sessions", "schedule": 3600.0},
    "purge-deleted": {"task": "teleai.purge_deleted", "schedule": 3600.0},
}
