"""A job's YAML (:class:`pycron.config.JobConfig`) as its state machine (:class:`pycron.state.Job`)."""

from __future__ import annotations

from pycron.backoff import (
    BackoffPolicy,
    CrashLoopPolicy,
    RandomSource,
    ReadinessPolicy,
    RestartMode,
    RestartPolicy,
    StopPolicy,
)
from pycron.config import JobConfig
from pycron.state import Job

MIN_DELAY_S = 0.001
"""BackoffPolicy needs a positive initial delay; ``initial_s: 0`` in the YAML means "at once"."""


def job_from_config(name: str, config: JobConfig, rng: RandomSource | None = None) -> Job:
    """The state machine of job ``name`` with the policies its config describes.

    The readiness deadline is left to the probe's own counting (``start_period_s`` plus
    ``failure_threshold`` failures), so the state machine has no separate readiness timer.
    """
    initial = max(MIN_DELAY_S, config.backoff.initial_s)
    return Job(
        name,
        restart=RestartPolicy(RestartMode(config.restart), frozenset(config.success_exit_codes)),
        backoff=BackoffPolicy(
            initial_s=initial,
            max_s=max(initial, config.backoff.max_s),
            factor=config.backoff.factor,
            jitter=config.backoff.jitter,
            reset_after_s=config.backoff.reset_after_s,
        ),
        crash_loop=CrashLoopPolicy(config.crash_loop.max_restarts, config.crash_loop.window_s),
        stop=StopPolicy(signal=config.stop.signum, timeout_s=max(MIN_DELAY_S, config.stop.timeout_s)),
        readiness=ReadinessPolicy(probe=config.readiness.type != "started"),
        rng=rng,
    )
