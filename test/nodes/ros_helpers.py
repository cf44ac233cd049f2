"""Helpers for node tests with real rclpy nodes over real DDS (Fast DDS on loopback).

- (the ``ros_domain`` fixture, a ROS_DOMAIN_ID per test, comes from test/conftest.py)
- ``RosHarness``: an rclpy context on that domain, one executor spinning every node in a
  background thread, and polling helpers for the test's thread.
- ``node_process``: a node started as a separate Python process (``python -m module``),
  stopped with SIGINT, its output kept in a file for failure messages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

REPO = Path(__file__).resolve().parents[2]

def wait_for(predicate: Callable[[], Any], timeout_s: float, step_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout_s`` passes; its last truthiness."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(step_s)


class RosHarness:
    """An rclpy context on ``domain_id`` whose nodes spin in a background thread."""

    def __init__(self, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._nodes: list[Node] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.02)

    def add(self, node: Node) -> Node:
        """Spin ``node`` (created with ``context=harness.context``)."""
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name: str) -> Node:
        """A plain node for the test's subscriptions and clients."""
        return self.add(Node(name, context=self.context))

    def call(self, client: Any, request: Any, timeout_s: float = 10.0) -> Any:
        """Call a service and wait for the response (AssertionError on timeout)."""
        assert client.wait_for_service(timeout_sec=timeout_s), f"service {client.srv_name} not available"
        future = client.call_async(request)
        assert wait_for(future.done, timeout_s), f"no response from {client.srv_name}"
        return future.result()

    def set_parameters(self, node: Node, target: str, values: dict[str, Any]) -> list[Any]:
        """Set parameters of node ``target`` (fully qualified name) one by one through its
        set_parameters service; the SetParametersResult of each."""
        client = node.create_client(SetParameters, f"{target}/set_parameters")
        results = []
        for name, value in values.items():
            request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
            results.extend(self.call(client, request).results)
        node.destroy_client(client)
        return results

    def close(self) -> None:
        for node in self._nodes:
            with contextlib.suppress(Exception):
                self.executor.remove_node(node)
                node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=1.0)


@contextlib.contextmanager
def ros_harness(domain_id: int) -> Iterator[RosHarness]:
    harness = RosHarness(domain_id)
    try:
        yield harness
    finally:
        harness.close()


class NodeProcess:
    """A node running as ``python -m <module> --ros-args ...`` in a child process."""

    def __init__(self, module: str, ros_args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args], cwd=REPO,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT, then SIGKILL after ``timeout_s``; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def node_process(module: str, ros_args: list[str], log_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(module, ros_args, log_path)
    try:
        yield process
    finally:
        process.stop()


__all__ = ["REPO", "NodeProcess", "RosHarness", "node_process", "ros_domain", "ros_harness",
           "wait_for"]
