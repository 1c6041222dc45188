"""pycron: the supervisor that starts, restarts, schedules and health-checks every Bourse process.

Pure core (no processes, injected clock): ``config`` (strict YAML schema and validation),
``state`` (per-job state machine, restart policy and backoff), ``cron`` (cron expressions and
maintenance windows in a job's time zone).
"""
