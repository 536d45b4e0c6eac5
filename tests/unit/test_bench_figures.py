"""The bench's machine and API server arithmetic (bench/figures.py) on made-up readings, and the
production settings the bench gives its operators (bench/common.py)."""

from __future__ import annotations

import pytest
from bench import figures, report
from bench.common import scheduler_defaults
from bench.figures import MACHINE, OTHER, Sample

from trigger_operator.config import OperatorConfig, SchedulerSettings

PROC_STAT = """cpu  1000 50 300 8000 200 10 40 0 500 0
cpu0 500 25 150 4000 100 5 20 0 250 0
intr 12345
"""


def test_machine_busy_is_total_less_idle_and_iowait_guest_not_counted_twice() -> None:
    # total = 1000 + 50 + 300 + 8000 + 200 + 10 + 40 + 0 (guest 500 is inside user already)
    assert figures.machine_busy_ticks(PROC_STAT) == (1400, 9600)


def test_machine_busy_of_a_kernel_without_steal() -> None:
    assert figures.machine_busy_ticks("cpu  10 0 5 100 1 0 0\n") == (15, 116)


def test_proc_stat_without_a_cpu_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="cpu"):
        figures.machine_busy_ticks("intr 1\n")


def test_process_ticks_are_utime_plus_stime_after_a_command_with_spaces_and_parentheses() -> None:
    stat = "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 123 5 6 20 0 12 0 99"
    assert figures.process_ticks(stat) == 823


def test_cores_over_a_window_with_other_work_on_the_machine() -> None:
    samples = [Sample(99.5, {MACHINE: 1000, "apiserver": 100, "etcd": 50}),
               Sample(100.0, {MACHINE: 1010, "apiserver": 101, "etcd": 50}),
               Sample(110.0, {MACHINE: 2810, "apiserver": 1001, "etcd": 350}),
               Sample(110.5, {MACHINE: 2900, "apiserver": 1050, "etcd": 360})]
    got = figures.cores(samples, [(100.0, 110.0)], ticks_per_s=100)
    # 1800 busy ticks in 10 s = 1.8 cores; apiserver 900 = 0.9; etcd 300 = 0.3; the rest 0.6
    assert got == {MACHINE: 1.8, "apiserver": 0.9, "etcd": 0.3, OTHER: 0.6}


def test_cores_take_the_samples_just_outside_a_window_and_sum_windows() -> None:
    samples = [Sample(float(t), {MACHINE: 100 * t, "op": 50 * t if t < 20 else 50 * 20}) for t in range(0, 41)]
    # [2.5, 4.5] reads 2..5 (3 s), [21.2, 22] reads 21..22 (1 s): op 150 + 0 ticks over 4 s
    got = figures.cores(samples, [(2.5, 4.5), (21.2, 22.0)], ticks_per_s=100)
    assert got["op"] == 0.375
    assert got[MACHINE] == 1.0
    assert got[OTHER] == 0.625


def test_a_process_missing_from_a_windows_first_sample_counts_nothing_there() -> None:
    samples = [Sample(0.0, {MACHINE: 0}), Sample(10.0, {MACHINE: 1000, "late": 400})]
    assert figures.cores(samples, [(0.0, 10.0)], ticks_per_s=100) == {MACHINE: 1.0, "late": 0.0, OTHER: 1.0}


def test_cores_without_two_samples_in_any_window_are_empty() -> None:
    assert figures.cores([Sample(5.0, {MACHINE: 1})], [(0.0, 10.0)], ticks_per_s=100) == {}
    assert figures.cores([], [(0.0, 10.0)], ticks_per_s=100) == {}


def test_a_burst_runs_to_the_last_job_at_least_5_and_at_most_60_seconds() -> None:
    moments = [0.0, 60.0, 120.0, 180.0]
    last = {0.0: 12.5, 60.0: 61.0, 120.0: 300.0}  # 180: no Job seen
    assert figures.burst_windows(moments, last) == [(0.0, 12.5), (60.0, 65.0), (120.0, 180.0), (180.0, 240.0)]


METRICS = """# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="POST",version="v1"} 100
apiserver_request_total{code="409",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="POST",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 3
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 7
apiserver_request_total_other{verb="POST",resource="jobs"} 999
apiserver_request_duration_seconds_count{verb="POST",resource="jobs"} 105
"""  # noqa: E501


def test_request_counts_sum_codes_by_verb_and_resource() -> None:
    assert figures.request_counts(METRICS) == {("POST", "jobs"): 105.0, ("PATCH", "pods/status"): 40.0,
                                               ("WATCH", "pods"): 3.0, ("GET", "-"): 7.0}


def test_served_gives_rates_by_verb_and_the_writes_named_as_the_audit_log_names_them() -> None:
    before = {("POST", "jobs"): 100.0, ("PATCH", "pods/status"): 40.0, ("GET", "jobs"): 10.0,
              ("DELETE", "pods"): 500.0}
    after = {("POST", "jobs"): 300.0, ("PATCH", "pods/status"): 140.0, ("GET", "jobs"): 30.0,
             ("DELETE", "pods"): 20.0, ("LIST", "jobs"): 2.0}  # DELETE went down: the API server restarted
    got = figures.served(before, after, seconds=10.0)
    assert got["requests"] == 342
    assert got["req_per_s"] == 34.2
    assert got["by_verb"] == {"POST": 20.0, "PATCH": 10.0, "DELETE": 2.0, "GET": 2.0, "LIST": 0.2}
    assert got["writes_per_s"] == 32.0
    assert got["top_writes"] == {"create jobs": 20.0, "patch pods/status": 10.0, "delete pods": 2.0}
    assert got["top_resources"] == {"jobs": 22.2, "pods/status": 10.0, "pods": 2.0}


def test_served_keeps_only_the_top_writes() -> None:
    after = {("POST", f"r{i}"): float(i) for i in range(1, 12)}
    assert list(figures.served({}, after, 1.0, top=3)["top_writes"]) == ["create r11", "create r10", "create r9"]


def test_served_needs_a_positive_span() -> None:
    with pytest.raises(ValueError, match="seconds"):
        figures.served({}, {}, 0.0)


def test_writes_timeline_buckets_each_write_after_its_latest_moment() -> None:
    writes = [(59.0, "create jobs"),  # before the first moment: not counted
              (60.0, "create jobs"), (61.9, "create jobs"), (62.0, "patch triggers/status"),
              (119.9, "delete jobs"),  # 59.9 s after 60: the last bucket
              (120.5, "create jobs"), (200.0, "create jobs")]  # 80 s after 120: past the span
    assert figures.writes_timeline(writes, [120.0, 60.0]) == {
        60.0: {"0-2": {"create jobs": 2}, "2-4": {"patch triggers/status": 1}, "58-60": {"delete jobs": 1}},
        120.0: {"0-2": {"create jobs": 1}}}


def test_writes_timeline_labels_follow_the_bucket() -> None:
    assert figures.writes_timeline([(13.0, "patch jobs")], [0.0], bucket=5.0, span=30.0) == {
        0.0: {"10-15": {"patch jobs": 1}}}


def test_cpu_line_lists_shares_largest_first_and_other_work_last() -> None:
    line = figures.cpu_line({MACHINE: 1.96, "etcd": 0.31, "apiserver": 0.92, OTHER: 0.5, "kwok": None}, 2)
    assert line == "machine 1.96 of 2 cores busy: apiserver 0.92, etcd 0.31, other 0.50"


OURS = 'trigger_operator_kube_requests_total{{code="{code}",resource="{resource}",verb="{verb}"}}'


def test_operator_requests_sum_codes_per_call_and_tell_writes_from_reads() -> None:
    before = {OURS.format(code="200", resource="triggers/status", verb="patch"): 100.0,
              OURS.format(code="201", resource="configmaps", verb="create"): 7.0,
              "trigger_operator_events_total{result=\"counted\"}": 5.0}
    after = {OURS.format(code="200", resource="triggers/status", verb="patch"): 300.0,
             OURS.format(code="409", resource="triggers/status", verb="patch"): 20.0,  # new series: from 0
             OURS.format(code="201", resource="configmaps", verb="create"): 7.0,  # unchanged: left out
             OURS.format(code="200", resource="configmaps", verb="get"): 50.0,
             OURS.format(code="200", resource="tokenreviews", verb="create"): 30.0,
             "trigger_operator_events_total{result=\"counted\"}": 5000.0}  # not a request
    assert figures.operator_requests(before, after, seconds=10.0) == {
        "req_per_s": 30.0, "writes_per_s": 25.0,
        "top": {"patch triggers/status": 22.0, "get configmaps": 5.0, "create tokenreviews": 3.0}}


def test_operator_requests_keep_the_top_calls_and_need_a_positive_span() -> None:
    after = {OURS.format(code="200", resource=f"r{i}", verb="get"): float(i) for i in range(1, 6)}
    assert list(figures.operator_requests({}, after, 1.0, top=2)["top"]) == ["get r5", "get r4"]
    with pytest.raises(ValueError, match="seconds"):
        figures.operator_requests({}, after, 0.0)


PHASE = {"window_s": 30.1, "cpu": {MACHINE: 1.98, "apiserver": 0.9, "operator": 0.5, "bench": 0.4, OTHER: 0.18},
         "apiserver": {"req_per_s": 400.0, "by_verb": {"PATCH": 300.0, "POST": 100.0},
                       "top_resources": {"triggers": 300.0, "tokenreviews": 60.0, "subjectaccessreviews": 40.0,
                                         "leases": 0.1, "pods": 0.1}},
         "operator": {"req_per_s": 390.0, "writes_per_s": 290.0,
                      "top": {"patch triggers/status": 290.0, "create tokenreviews": 60.0}}}


def test_phase_line_puts_cores_the_api_server_and_the_operators_requests_on_one_line() -> None:
    assert figures.phase_line("events single", PHASE, 2) == (
        "events single (30.1 s): machine 1.98 of 2 cores busy: apiserver 0.90, operator 0.50, bench 0.40, "
        "other 0.18; API server 400.0 req/s (PATCH 300.0, POST 100.0; top triggers 300.0, tokenreviews 60.0, "
        "subjectaccessreviews 40.0, leases 0.1); the operator's own 390.0 req/s (writes 290.0/s: "
        "patch triggers/status 290.0, create tokenreviews 60.0)")


def test_phase_line_without_api_figures_has_the_cores_alone() -> None:
    assert figures.phase_line("window", {"window_s": 120.0, "cpu": {MACHINE: 0.5, "operator": 0.1}}, 2) == (
        "window (120.0 s): machine 0.50 of 2 cores busy: operator 0.10")


def test_the_report_has_a_line_per_phase_of_events_and_conditions() -> None:
    def scenario(machine: dict[str, object]) -> dict[str, object]:
        return {"n": 100, "date": "d", "commit": "c", "trigger": {}, "machine": machine}
    results = {"machine": {}, "scenarios": {
        "events_inbox": {**scenario({"cores": 2, "single": PHASE, "batched": {**PHASE, "window_s": 15.0}}),
                         "inbox": True},
        "conditions": scenario({"cores": 2, "window": {**PHASE, "window_s": 120.0}}),
        "events": {"n": 100, "date": "d", "commit": "c", "trigger": {}}}}  # from before: no line
    lines = report.markdown(results).splitlines()
    phases = [line for line in lines if line.startswith("- ") and "cores busy" in line]
    assert [line.split(":")[0] for line in phases] == [
        "- events_inbox N = 100 single events (30.1 s)", "- events_inbox N = 100 batches (15.0 s)",
        "- N = 100 window (120.0 s)"]
    assert any("`senders`: the Go event senders" in line for line in lines)


def test_the_bench_runs_the_operator_at_the_production_scheduler_settings() -> None:
    env = scheduler_defaults({})
    assert env["TRIGGER_OPERATOR_SCHEDULER_NAME_HOLD_SECONDS"] == str(SchedulerSettings().name_hold_seconds)
    assert env["TRIGGER_OPERATOR_SCHEDULER_CREATE_WITHIN_SECONDS"] == str(SchedulerSettings().create_within_seconds)
    # every one of them reads back as the default: the operator starts with exactly SchedulerSettings()
    assert OperatorConfig.from_env(env).scheduler == SchedulerSettings()


def test_a_scheduler_setting_in_the_bench_environment_wins_over_the_default() -> None:
    env = scheduler_defaults({"TRIGGER_OPERATOR_SCHEDULER_CREATE_FIRST": "false"})
    assert OperatorConfig.from_env(env).scheduler.create_first is False
    assert env["TRIGGER_OPERATOR_SCHEDULER_NAME_HOLD_SECONDS"] == str(SchedulerSettings().name_hold_seconds)


def test_raw_jobs_in_the_burst_are_a_side_of_their_own_one_owner_each() -> None:
    from bench.scenarios.thundering import OUR_SCHEDULED, JobLog

    log = JobLog()
    for name, arrival in (("rb-00000", 120.5), ("rb-00001", 121.0)):
        log.on_event("ADDED", {"metadata": {"uid": name, "name": name, "namespace": "br-burst",
                                            "annotations": {OUR_SCHEDULED: "1970-01-01T00:02:00Z"}}}, arrival)
    log.on_event("ADDED", {"metadata": {"uid": "t", "name": "t00000-120", "namespace": "bt-0",
                                        "labels": {"trigger-operator.io/trigger": "t00000"}}}, 121.5)
    assert sorted((s.owner, s.arrival - s.moment) for s in log.of("raw", [120.0])) == [
        ("rb-00000", 0.5), ("rb-00001", 1.0)]
    assert [s.owner for s in log.of("trigger", [120.0])] == ["t00000"]


def test_the_trigger_side_against_the_raw_client_in_the_burst() -> None:
    from bench.scenarios.thundering import against_raw_in_burst

    out = {"n": 1000, "trigger_create_per_s": 150.0, "trigger": {"p99_with_misses_s": 7.0}}
    judged = against_raw_in_burst(out, {"create_per_s": 180.0, "p99_s": 6.0})
    assert judged["trigger_over_raw_in_burst"] == pytest.approx(0.833, abs=0.001)
    assert judged["targets_in_burst"] == {"p99_limit_s (1.25 N / raw in the burst)": pytest.approx(6.94, abs=0.01),
                                          "p99_within_limit": False, "create_at_least_80pct_of_raw": True}
    assert against_raw_in_burst(out, {"create_per_s": None})["targets_in_burst"]["create_at_least_80pct_of_raw"] \
        is False


def test_the_report_puts_the_raw_client_in_the_burst_beside_both_sides() -> None:
    side = {"jobs": 2000, "expected": 2000, "missed": 0, "duplicated": 0, "p50_s": 2.0, "p99_s": 7.0,
            "p99_with_misses_s": 7.0, "max_s": 7.1, "create_per_s": 150.0}
    st = {"received": {"p50_s": 1.0, "p99_s": 2.0}, "answered": {"p50_s": 1.2, "p99_s": 2.5},
          "seen": {"p50_s": 1.5, "p99_s": 3.0}}
    scenario = {"n": 1000, "date": "d", "commit": "c", "raw_create_per_s": 400.0, "raw_elapsed_s": 2.5,
                "trigger": {**side, "stages": st}, "cronjob": side, "trigger_over_raw_in_burst": 0.75,
                "targets_in_burst": {"p99_limit_s (1.25 N / raw in the burst)": 6.25},
                "raw_in_burst": {"threads": 64, "jobs": 1000, "p50_s": 2.5, "p99_s": 5.0, "max_s": 5.5,
                                 "create_per_s": 200.0, "burst": {MACHINE: 1.9, "apiserver": 1.3, OTHER: 0.1},
                                 "stages": {**st, "seen": {"p50_s": 1.3, "p99_s": 2.6}}},
                "machine": {"cores": 2}}
    lines = report.markdown({"machine": {}, "scenarios": {"thundering_minute": scenario}}).splitlines()
    assert "| 1000 | raw client in the burst, 64 threads | 1000 / 1000 | | | 2.50 | 5.00 | 5.50 | 200.0 | 50% | | |" \
        in lines
    assert "  - against the raw client in the burst (200.0/s, p99 5.00 s): the Trigger side's creates 75% of it, " \
           "p99 7.00 s against 1.25 x N / its rate = 6.25 s" in lines
    assert "  - seconds after the moment (p50 / p99), create received and answered by the API server (its audit " \
           "log), Job seen by the watch: the Trigger side: received 1.00 / 2.00, answered 1.20 / 2.50, seen 1.50 / " \
           "3.00; the raw client in the burst: received 1.00 / 2.00, answered 1.20 / 2.50, seen 1.30 / 2.60" in lines
    assert "  - N = 1000, the raw client's burst (operator stopped): machine 1.90 of 2 cores busy: apiserver 1.30, " \
           "other 0.10" in lines


def test_stages_put_each_create_after_its_own_moment_and_leave_out_other_moments() -> None:
    from bench.scenarios.thundering import Seen, stages

    creates = {("bt-0", "t00000-120"): (121.0, 121.5), ("bt-0", "t00001-120"): (122.0, 122.2),
               ("bt-0", "t00000-180"): (181.0, 181.1), ("bt-0", "odd-name"): (0.0, 0.0)}
    seen = [Seen("trigger", "bt-0", "t00000", 120.0, "u1", 122.0),
            Seen("trigger", "bt-0", "t00001", 120.0, "u2", 123.0)]
    out = stages(creates, [120.0], lambda name: float(name.rpartition("-")[2]), seen)
    assert out["creates"] == 2
    assert [(out[k]["mean_s"], out[k]["max_s"]) for k in ("received", "answered", "seen")] == [
        (1.5, 2.0), (1.85, 2.2), (2.5, 3.0)]
