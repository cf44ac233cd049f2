"""NodeDiagnostics: bookkeeping on a fake clock, and a real DiagnosticArray over DDS."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ros_helpers import ros_harness, wait_for

from hdr_dcs.nodes.diagnostics import Diagnostics, LatencyRecorder, Level, NodeDiagnostics, RateMeter
from hdr_dcs.nodes.qos import diagnostics_qos


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def test_rate_meter_counts_events_in_the_sliding_window() -> None:
    clock = FakeClock()
    meter = RateMeter(clock, window_s=2.0)
    for _ in range(40):  # 20 Hz for 2 s
        clock.advance(0.05)
        meter.tick()
    assert meter.rate_hz() == pytest.approx(20.0, rel=0.03)
    for _ in range(10):  # then 5 Hz for 2 s: the window forgets the first phase
        clock.advance(0.2)
        meter.tick()
    assert meter.rate_hz() == pytest.approx(5.0, rel=0.11)
    clock.advance(2.5)  # nothing for longer than the window
    assert meter.rate_hz() == 0.0
    assert meter.total == 50


def test_rate_meter_young_meter_divides_by_its_age() -> None:
    clock = FakeClock()
    meter = RateMeter(clock, window_s=10.0)
    for _ in range(10):
        clock.advance(0.1)
        meter.tick()
    assert meter.rate_hz() == pytest.approx(10.0)


def test_latency_percentiles_over_a_bounded_window() -> None:
    rec = LatencyRecorder(window=101)
    assert rec.summary() is None
    for ms in range(1000, 1101):  # pushed out by the next 101
        rec.record(ms / 1e3)
    for ms in range(0, 101):
        rec.record(ms / 1e3)
    rec.record(float("nan"))  # ignored
    s = rec.summary()
    assert s == pytest.approx({"p50": 0.050, "p90": 0.090, "p99": 0.099, "max": 0.100})
    assert rec.total == 202


def test_report_levels_staleness_counters_and_sorted_values() -> None:
    clock = FakeClock()
    diag = Diagnostics("cam: camera", "sim", clock=clock, rate_window_s=1.0)
    diag.expect("output", within_s=2.0, what="frames")
    diag.ok("streaming")
    report = diag.report()
    assert (report.level, report.message) == (Level.OK, "streaming")

    clock.advance(2.5)  # never ticked: stale counted from expect()
    report = diag.report()
    assert report.level == Level.WARN
    assert report.message == "no frames for 2.5 s"

    for _ in range(10):
        diag.rate("output").tick()
        diag.latency("render").record(0.004)
        clock.advance(0.1)
    diag.count("dropped", "render overrun")
    diag.count("dropped", "render overrun", 2)
    diag.count("dropped", "sequence gap")
    diag.set("exposure (us)", 921.123456789)
    diag.set("enabled", True)
    report = diag.report()
    assert report.level == Level.OK and report.message == "streaming"
    keys = [k for k, _ in report.values]
    assert keys == sorted(keys)
    assert report.value("dropped: render overrun") == "3"
    assert report.value("dropped: sequence gap") == "1"
    assert report.value("exposure (us)") == "921.123"
    assert report.value("enabled") == "true"
    assert report.value("output rate (Hz)") == "10.00"
    assert report.value("render p50 (ms)") == "4.00" and report.value("render max (ms)") == "4.00"
    assert diag.counts("dropped") == {"render overrun": 3, "sequence gap": 1}

    # Conditions under keys combine: the worst level, all non-OK messages worst first.
    diag.warn("render slow", key="render")
    diag.error("camera lost", key="backend")
    clock.advance(3.0)
    report = diag.report()
    assert report.level == Level.ERROR
    assert report.message == "camera lost; render slow; no frames for 3.1 s"  # last tick 0.1 s earlier
    diag.clear("backend")
    diag.clear("render")
    diag.rate("output").tick()
    assert diag.report().level == Level.OK


def test_node_diagnostics_published_and_received_by_another_node(ros_domain: int) -> None:
    with ros_harness(ros_domain) as ros:
        from rclpy.node import Node

        publisher_node = ros.add(Node("diag_source", context=ros.context))
        diag = NodeDiagnostics(publisher_node, "widget", hardware_id="hw-42", period_s=0.1)
        diag.expect("input", within_s=0.05, what="input")
        diag.count("dropped", "queue full", 4)
        diag.set("mode", "test")
        received: list[DiagnosticArray] = []
        listener = ros.node("diag_listener")
        listener.create_subscription(DiagnosticArray, "/diagnostics", received.append, diagnostics_qos())
        assert wait_for(lambda: any(m.status[0].level == DiagnosticStatus.WARN for m in received), 10.0)
        status = next(m.status[0] for m in received if m.status[0].level == DiagnosticStatus.WARN)
        assert status.name == "diag_source: widget"
        assert status.hardware_id == "hw-42"
        assert status.message.startswith("no input for ")
        values = {kv.key: kv.value for kv in status.values}
        assert values["dropped: queue full"] == "4" and values["mode"] == "test"
        assert [kv.key for kv in status.values] == sorted(values)

        diag.error("broken", key="x")
        assert wait_for(lambda: received[-1].status[0].level == DiagnosticStatus.ERROR, 5.0)
        assert received[-1].status[0].message.startswith("broken; no input for")
