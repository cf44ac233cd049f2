"""Node diagnostics on /diagnostics without diagnostic_updater (not installable here).

Two parts:

- ``Diagnostics``: framework-free bookkeeping (no rclpy), thread safe, testable with a
  fake clock: rate meters, latency recorders, counters by reason, key/values, and a
  level with a message built from named conditions and staleness checks.
- ``NodeDiagnostics``: the same, owned by an rclpy node, publishing one
  ``diagnostic_msgs/DiagnosticStatus`` in a ``DiagnosticArray`` on /diagnostics every
  ``period_s`` (1 Hz by default), named ``"<node name>: <component>"``.

Typical use in a node::

    self.diag = NodeDiagnostics(self, "camera", hardware_id="sim:street")
    self.diag.expect("output", within_s=2.0, what="frames")   # WARN when nothing for 2 s
    ...
    self.diag.rate("output").tick()                  # "output rate (Hz)"
    self.diag.latency("render").record(0.012)        # "render p50/p90/p99/max (ms)", seconds in
    self.diag.count("dropped", "render overrun")     # "dropped: render overrun"
    self.diag.set("exposure (us)", 921.0)
    self.diag.error("cannot open camera: ...", key="backend")   # until clear("backend")

Level: the highest of the conditions set with ``ok/warn/error`` (each under a ``key``,
default ``""``) and the staleness checks. Message: with everything OK, the message of
the ``""`` condition (or "OK"); otherwise the messages of all non-OK conditions, worst
first, joined by "; ".
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rclpy only for the publisher part
    from rclpy.node import Node

__all__ = ["Diagnostics", "LatencyRecorder", "Level", "NodeDiagnostics", "RateMeter", "StatusReport"]

Clock = Callable[[], float]


class Level(enum.IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class RateMeter:
    """Events per second over a sliding window of ``window_s`` seconds.

    The rate is the number of events in the window divided by the window (or by the
    meter's age while it is younger than the window), so it falls to 0 once events stop.
    """

    def __init__(self, clock: Clock = time.monotonic, window_s: float = 5.0,
                 max_events: int = 100_000) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._clock = clock
        self.window_s = float(window_s)
        self._events: deque[float] = deque(maxlen=max_events)
        self.created_s = clock()
        self.last_s: float | None = None
        self.total = 0

    def tick(self, n: int = 1) -> None:
        """Record ``n`` events now."""
        now = self._clock()
        for _ in range(n):
            self._events.append(now)
        self.total += n
        self.last_s = now

    def rate_hz(self) -> float:
        """Events per second over the last ``window_s`` seconds."""
        now = self._clock()
        while self._events and self._events[0] < now - self.window_s:
            self._events.popleft()
        span = min(self.window_s, now - self.created_s)
        if span <= 0:
            return 0.0
        return len(self._events) / span


class LatencyRecorder:
    """The last ``window`` durations (seconds) and their percentiles."""

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._values: deque[float] = deque(maxlen=window)
        self.total = 0

    def record(self, seconds: float) -> None:
        """Record one duration in seconds (NaN and negative values are ignored)."""
        if math.isfinite(seconds) and seconds >= 0:
            self._values.append(float(seconds))
            self.total += 1

    def summary(self) -> dict[str, float] | None:
        """``{"p50", "p90", "p99", "max"}`` in seconds over the window (linear
        interpolation between order statistics), or None before the first record."""
        if not self._values:
            return None
        values = sorted(self._values)

        def pct(q: float) -> float:
            pos = q / 100 * (len(values) - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, len(values) - 1)
            return values[lo] + (values[hi] - values[lo]) * (pos - lo)

        return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": values[-1]}


@dataclass(frozen=True)
class StatusReport:
    """One DiagnosticStatus, framework-free. ``values`` are sorted by key."""

    name: str
    hardware_id: str
    level: Level
    message: str
    values: tuple[tuple[str, str], ...]

    def value(self, key: str) -> str | None:
        """The value of ``key``, or None."""
        return dict(self.values).get(key)


@dataclass
class _Expectation:
    meter: str
    within_s: float
    level: Level
    what: str
    since_s: float


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Diagnostics:
    """Framework-free diagnostic bookkeeping for one component (thread safe).

    Args:
        name: the status name, e.g. ``"reference_camera: camera"``.
        hardware_id: DiagnosticStatus.hardware_id (camera serial, "sim", ...).
        clock: monotonic seconds; injectable for tests.
        rate_window_s: sliding window of the rate meters.
        latency_window: number of samples each latency recorder keeps.
    """

    def __init__(self, name: str, hardware_id: str = "", clock: Clock = time.monotonic,
                 rate_window_s: float = 5.0, latency_window: int = 1000) -> None:
        self.name = name
        self.hardware_id = hardware_id
        self._clock = clock
        self._rate_window_s = rate_window_s
        self._latency_window = latency_window
        self._lock = threading.RLock()
        self._rates: dict[str, RateMeter] = {}
        self._latencies: dict[str, LatencyRecorder] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._values: dict[str, str] = {}
        self._conditions: dict[str, tuple[Level, str]] = {}
        self._expectations: dict[str, _Expectation] = {}

    # -- meters -----------------------------------------------------------------------
    def rate(self, name: str) -> RateMeter:
        """The rate meter ``name`` (created on first use), reported as "<name> rate (Hz)"."""
        with self._lock:
            meter = self._rates.get(name)
            if meter is None:
                meter = self._rates[name] = RateMeter(self._clock, self._rate_window_s)
            return meter

    def latency(self, name: str) -> LatencyRecorder:
        """The latency recorder ``name`` (seconds in), reported as "<name> p50 (ms)" etc."""
        with self._lock:
            rec = self._latencies.get(name)
            if rec is None:
                rec = self._latencies[name] = LatencyRecorder(self._latency_window)
            return rec

    def count(self, name: str, reason: str, n: int = 1) -> int:
        """Add ``n`` to counter ``name`` for ``reason`` ("<name>: <reason>"); returns the new count."""
        with self._lock:
            by_reason = self._counts.setdefault(name, {})
            by_reason[reason] = by_reason.get(reason, 0) + n
            return by_reason[reason]

    def counts(self, name: str) -> dict[str, int]:
        """A copy of counter ``name`` by reason."""
        with self._lock:
            return dict(self._counts.get(name, {}))

    def set(self, key: str, value: Any) -> None:
        """Report ``key: value`` (floats with 6 significant digits, bools as true/false)."""
        with self._lock:
            self._values[key] = _format(value)

    def unset(self, key: str) -> None:
        """Stop reporting ``key``."""
        with self._lock:
            self._values.pop(key, None)

    # -- level --------------------------------------------------------------------------
    def ok(self, message: str = "", key: str = "") -> None:
        """Condition ``key`` is fine (its message shows only while everything is OK)."""
        self._condition(key, Level.OK, message)

    def warn(self, message: str, key: str = "") -> None:
        """Condition ``key`` is degraded, with a reason."""
        self._condition(key, Level.WARN, message)

    def error(self, message: str, key: str = "") -> None:
        """Condition ``key`` has failed, with a reason."""
        self._condition(key, Level.ERROR, message)

    def clear(self, key: str = "") -> None:
        """Forget condition ``key``."""
        with self._lock:
            self._conditions.pop(key, None)

    def _condition(self, key: str, level: Level, message: str) -> None:
        with self._lock:
            self._conditions[key] = (Level(level), message)

    def expect(self, meter: str, within_s: float, what: str | None = None, level: Level = Level.WARN) -> None:
        """Report ``level`` "no <what> for N s" when rate meter ``meter`` has not ticked for
        ``within_s`` seconds (counted from now if it never ticked). ``within_s`` <= 0 removes it."""
        with self._lock:
            if within_s <= 0:
                self._expectations.pop(meter, None)
                return
            self.rate(meter)
            self._expectations[meter] = _Expectation(meter, float(within_s), Level(level), what or meter,
                                                     self._clock())

    # -- report -------------------------------------------------------------------------
    def report(self) -> StatusReport:
        """The current status: level, message and sorted values."""
        with self._lock:
            now = self._clock()
            problems: list[tuple[Level, str]] = []
            for level, message in self._conditions.values():
                if level > Level.OK:
                    problems.append((level, message))
            for exp in self._expectations.values():
                meter = self._rates[exp.meter]
                last = meter.last_s if meter.last_s is not None else exp.since_s
                last = max(last, exp.since_s)
                if now - last > exp.within_s:
                    problems.append((exp.level, f"no {exp.what} for {now - last:.1f} s"))
            if problems:
                problems.sort(key=lambda p: -p[0])  # stable: worst first, then in order set
                level = problems[0][0]
                message = "; ".join(m for _, m in problems)
            else:
                level = Level.OK
                message = self._conditions.get("", (Level.OK, ""))[1] or "OK"

            values = dict(self._values)
            for name, meter in self._rates.items():
                values[f"{name} rate (Hz)"] = f"{meter.rate_hz():.2f}"
            for name, rec in self._latencies.items():
                summary = rec.summary()
                if summary is not None:
                    for stat, seconds in summary.items():
                        values[f"{name} {stat} (ms)"] = f"{seconds * 1e3:.2f}"
            for name, by_reason in self._counts.items():
                for reason, n in by_reason.items():
                    values[f"{name}: {reason}"] = str(n)
            return StatusReport(self.name, self.hardware_id, level, message, tuple(sorted(values.items())))


class NodeDiagnostics(Diagnostics):
    """``Diagnostics`` of one rclpy node component, published on /diagnostics.

    Creates a publisher (``diagnostics_qos()``) and a timer on ``node``; the status name is
    ``"<node name>: <component>"``. Bookkeeping calls are thread safe (call them from a
    capture thread); publishing happens on the node's executor.

    Args:
        node: the owning node.
        component: what the status describes ("camera", "calibration", ...).
        hardware_id: DiagnosticStatus.hardware_id.
        period_s: publishing period (default 1 s); <= 0: only on ``publish()``.
        topic: default "/diagnostics" (remappable like any topic).
    """

    def __init__(self, node: Node, component: str, hardware_id: str = "", period_s: float = 1.0,
                 topic: str = "/diagnostics", clock: Clock = time.monotonic, **kwargs: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from .qos import diagnostics_qos

        super().__init__(f"{node.get_name()}: {component}", hardware_id, clock, **kwargs)
        self._node = node
        self._publisher = node.create_publisher(DiagnosticArray, topic, diagnostics_qos())
        self._timer = node.create_timer(period_s, self.publish) if period_s > 0 else None

    def to_msg(self, report: StatusReport | None = None) -> Any:
        """``report`` (default: the current one) as a DiagnosticArray stamped now."""
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        report = report or self.report()
        status = DiagnosticStatus(level=bytes([int(report.level)]), name=report.name,
                                  message=report.message, hardware_id=report.hardware_id,
                                  values=[KeyValue(key=k, value=v) for k, v in report.values])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        return msg

    def publish(self) -> None:
        """Publish the current status now (also called by the timer)."""
        self._publisher.publish(self.to_msg())

    def destroy(self) -> None:
        """Stop publishing (the node's destruction does this too)."""
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        self._node.destroy_publisher(self._publisher)
