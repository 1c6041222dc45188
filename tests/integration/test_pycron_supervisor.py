"""pycron supervising real processes: dependency order, restarts with backoff, crash loops, probes,
process-group stops, schedules. Each test runs ``python -m pycron`` on its own YAML and free port,
and awaits pycron's own event lines (no sleeps)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.pycron_fixtures import StartPycron, pids_alive, script


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Await the end of processes that are not our children (pidfd); those still alive after ``timeout``."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        pending = list(fds)
        while pending and (left := (deadline - datetime.now(UTC)).total_seconds()) > 0:
            ready, _, _ = select.select(pending, [], [], left)
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)
    return pids_alive(pids)


def log_times(log_file: Path, pattern: str) -> list[datetime]:
    """Timestamps of the job-log lines matching ``pattern``."""
    times = []
    for line in log_file.read_text().splitlines():
        if re.search(pattern, line):
            times.append(datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")))
    return times


SLEEPER = """
import sys, time
print("up", sys.argv[1], flush=True)
time.sleep(3600)
"""


def test_pycron_when_jobs_depend_then_each_starts_after_its_dependency_is_ready_and_stops_before_it(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    slow = script(
        tmp_path,
        "slow.py",
        """
        import time
        time.sleep(0.5)   # not ready at once: the dependent must wait for the log line, not the spawn
        print("listening", flush=True)
        time.sleep(3600)
        """,
    )
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    run = start_pycron(f"""
        jobs:
          api:
            command: [python, {sleeper}, api]
            depends_on: [db]
          db:
            command: [python, {slow}]
            readiness: {{type: log, pattern: listening, interval_s: 0.05}}
          worker:
            command: [python, {sleeper}, worker]
            depends_on: [api, db]
        """)
    run.wait_line(r"all jobs ready")
    jobs = {job["name"]: job for job in run.get("/processes")}
    assert [job["name"] for job in run.get("/processes")] == ["db", "api", "worker"]
    assert {job["state"] for job in jobs.values()} == {"ready"}
    started = {
        name: datetime.fromisoformat(job["started_at"].replace("Z", "+00:00")) for name, job in jobs.items()
    }
    db_ready = log_times(run.data_dir / "logs" / "db.log", r"db: ready")[0]
    assert started["db"] < db_ready <= started["api"] <= started["worker"]
    pids = [job["pid"] for job in jobs.values()]

    assert run.terminate() == 0
    output = "\n".join(run.child.lines)
    stops = [output.index(f"{name}: stopped (") for name in ("worker", "api", "db")]
    assert stops == sorted(stops), output
    assert wait_gone(pids) == []


def test_pycron_when_job_keeps_crashing_then_it_backs_off_exponentially_and_goes_fatal(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    crash = script(tmp_path, "crash.py", "import sys\nprint('crashing', flush=True)\nsys.exit(3)\n")
    run = start_pycron(f"""
        jobs:
          flaky:
            command: [python, {crash}]
            backoff: {{initial_s: 0.2, factor: 2, max_s: 0.5, jitter: 0}}
            crash_loop: {{max_restarts: 3, window_s: 60}}
        """)
    line = run.wait_line(r"flaky: crash loop: .*", timeout=30)
    assert "4 restarts within 60s (max_restarts=3)" in line and "exited with code 3" in line
    job = run.job("flaky")
    assert job["state"] == "fatal" and job["restarts"] == 3 and job["pid"] is None
    assert job["last_exit"]["code"] == 3
    output = "\n".join(run.child.lines)
    assert re.findall(r"restart in ([\d.]+)s", output) == ["0.2", "0.4", "0.5"]
    starts = log_times(run.data_dir / "logs" / "flaky.log", r"pycron \| starting:")
    exits = log_times(run.data_dir / "logs" / "flaky.log", r"exited with code 3; restart in")
    assert len(starts) == 4
    for exit_at, next_start, delay in zip(exits, starts[1:], (0.2, 0.4, 0.5), strict=True):
        assert (next_start - exit_at).total_seconds() >= delay - 0.01

    events = run.get("/processes/flaky/logs?tail=200")
    assert sum(line["text"] == "crashing" for line in events) == 4

    status, body = run.request("POST", "/processes/flaky/start?wait=5", token=run.read_token())
    assert status == 200 and body["state"] in ("starting", "backoff", "exited", "fatal", "ready")


def test_pycron_when_health_probe_fails_then_job_is_restarted_and_ready_again(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    flag = tmp_path / "sick"
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    probe = script(
        tmp_path, "probe.py", f"import os, sys\nsys.exit(1 if os.path.exists({str(flag)!r}) else 0)\n"
    )
    run = start_pycron(f"""
        jobs:
          svc:
            command: [python, {sleeper}, svc]
            backoff: {{initial_s: 0.1, jitter: 0}}
            health:
              - {{type: command, argv: [python, {probe}], interval_s: 0.2, timeout_s: 5,
                 failure_threshold: 2}}
        """)
    run.wait_line(r"svc: ready \(pid \d+\)")
    first_pid = run.job("svc")["pid"]
    flag.touch()
    run.wait_line(r"svc: health probe failed: command .* exit 1.*; restarting")
    flag.unlink()
    line = run.wait_line(rf"svc: ready \(pid (?!{first_pid}\b)\d+\)")
    job = run.job("svc")
    assert job["state"] == "ready" and job["restarts"] == 1 and str(job["pid"]) in line
    assert job["last_exit"]["signal"] == signal.SIGTERM
    assert wait_gone([first_pid]) == []


GROUP = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores the stop signal: only SIGKILL ends it
kids = [subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"])
        for _ in range(2)]
print("pids", os.getpid(), *[k.pid for k in kids], flush=True)
time.sleep(3600)
"""


def test_pycron_when_job_ignores_stop_signal_then_its_whole_group_is_killed_and_nothing_is_left(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    group = script(tmp_path, "group.py", GROUP)
    run = start_pycron(f"""
        jobs:
          stubborn:
            command: [python, {group}]
            readiness: {{type: log, pattern: "^pids ", interval_s: 0.05}}
            stop: {{signal: SIGTERM, timeout_s: 0.5}}
        """)
    run.wait_line(r"all jobs ready")
    pids_line = next(
        line for line in run.get("/processes/stubborn/logs?tail=50") if line["text"].startswith("pids")
    )
    pids = [int(pid) for pid in pids_line["text"].split()[1:]]
    assert len(pids) == 3 and pids_alive(pids) == pids

    job = run.post("/processes/stubborn/stop?wait=10")
    assert job["state"] == "stopped" and job["pid"] is None
    assert job["last_exit"]["signal"] == signal.SIGKILL
    assert wait_gone(pids) == []
    run.wait_line(r"stubborn: pid \d+ still running 0.5s after the stop signal; killed")


def test_pycron_when_killed_hard_then_its_jobs_do_not_outlive_it(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    run = start_pycron(f"""
        jobs:
          orphan:
            command: [python, {sleeper}, orphan]
        """)
    run.wait_line(r"all jobs ready")
    pid = run.job("orphan")["pid"]
    run.child.popen.send_signal(signal.SIGKILL)  # pycron only, not its jobs' groups
    run.child.popen.wait(10)
    assert wait_gone([pid]) == []


def test_pycron_when_run_is_scheduled_then_it_fires_at_the_second_and_a_failure_is_an_event(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    fire = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    cron = f"{fire.second} {fire.minute} {fire.hour} * * *"
    ok = script(tmp_path, "ok.py", "print('refreshed', flush=True)\n")
    bad = script(tmp_path, "bad.py", "import sys\nprint('no data', flush=True)\nsys.exit(4)\n")
    run = start_pycron(f"""
        jobs:
          refresh:
            command: [python, {ok}]
            autostart: false
            restart: never
            schedules: [{{cron: "{cron}", tz: UTC, action: run}}]
          broken:
            command: [python, {bad}]
            autostart: false
            restart: never
            schedules: [{{cron: "{cron}", tz: UTC, action: run}}]
        """)
    schedule = run.job("refresh")["schedules"][0]
    assert schedule["next"] == fire.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    run.wait_line(r"broken: scheduled run failed: exited with code 4", timeout=20)
    run.wait_line(r"refresh: exited with code 0", timeout=20)
    started = log_times(run.data_dir / "logs" / "refresh.log", r"pycron \| starting:")
    assert len(started) == 1
    assert fire <= started[0] < fire + timedelta(seconds=1), (fire, started)
    assert run.job("refresh")["state"] == "exited" and run.job("refresh")["last_exit"]["code"] == 0
    assert json.loads((run.data_dir / "pycron.schedules.json").read_text())["fired"]


def test_pycron_when_a_run_was_missed_while_down_then_run_once_catches_it_up_at_boot(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    ok = script(tmp_path, "ok.py", "print('caught up', flush=True)\n")
    data = tmp_path / "data"
    data.mkdir()
    key = "nightly#0 0 3 * * * UTC run"
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    (data / "pycron.schedules.json").write_text(json.dumps({"fired": {}, "watched": {key: two_days_ago}}))
    run = start_pycron(
        f"""
        jobs:
          nightly:
            command: [python, {ok}]
            autostart: false
            restart: never
            schedules: [{{cron: "0 3 * * *", tz: UTC, action: run, missed: run-once}}]
        """,
        data_dir=data,
    )
    run.wait_line(r"nightly: catching up the run missed at ")
    run.wait_line(r"nightly: exited with code 0")
    lines = [line["text"] for line in run.get("/processes/nightly/logs?tail=100")]
    assert lines.count("caught up") == 1  # two nights missed, one run (run-once)


def test_pycron_when_health_fails_inside_maintenance_window_then_job_is_neither_restarted_nor_alerted(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    opened = datetime.now(UTC) - timedelta(minutes=1)
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    run = start_pycron(f"""
        jobs:
          tws:
            command: [python, {sleeper}, tws]
            health:
              - {{type: command, argv: [python, -c, "raise SystemExit(1)"], interval_s: 0.1,
                 failure_threshold: 2}}
            maintenance:
              - {{tz: UTC, cron: "{opened.minute} {opened.hour} * * *", duration: 2h}}
        """)
    run.wait_line(r"tws: maintenance window started")
    pid = int(run.wait_line(r"tws: ready \(pid (\d+)\)").rsplit(" ", 1)[1].strip(")"))
    run.wait_line(r"tws: ready -> unhealthy")
    job = run.job("tws")
    assert (job["state"], job["pid"], job["restarts"], job["maintenance"]) == ("unhealthy", pid, 0, True)
    assert "health probe failed" in job["reason"]
    assert not any("WARNING" in line for line in run.child.lines), run.child.lines


def test_pycron_when_log_heartbeat_stops_then_health_fails_and_job_is_restarted(
    start_pycron: StartPycron, tmp_path: Path
) -> None:
    flag = tmp_path / "hang"
    beater = script(
        tmp_path,
        "beater.py",
        f"""
        import os, time
        while True:
            if not os.path.exists({str(flag)!r}):
                print("beat", flush=True)
            time.sleep(0.05)
        """,
    )
    run = start_pycron(f"""
        jobs:
          beater:
            command: [python, {beater}]
            backoff: {{initial_s: 0.1, jitter: 0}}
            health:
              - {{type: log, pattern: "^beat$", interval_s: 0.3, failure_threshold: 2}}
        """)
    first = int(run.wait_line(r"beater: ready \(pid (\d+)\)").rsplit(" ", 1)[1].strip(")"))
    flag.touch()  # the job hangs: still running, no more heartbeats
    run.wait_line(r"beater: health probe failed: log: no line matching '\^beat\$' yet; restarting")
    flag.unlink()
    run.wait_line(rf"beater: ready \(pid (?!{first}\b)\d+\)")
    assert run.job("beater")["restarts"] == 1
