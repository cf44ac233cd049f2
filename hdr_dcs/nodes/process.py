"""Running a node as its own process: the body of every node's console script.

rclpy's own signal handlers shut the context down at SIGINT before a node can publish what
it still holds; these helpers install none and stop the executor instead, so that every
node closes in order (``before_destroy``) and exits 0, and a bad command line or bad
parameters end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from .qos import prefer_async_publishing

__all__ = ["init_ros", "run_node", "spin_until_signal"]


def spin_until_signal(executor: Any, is_done: Callable[[], bool] = lambda: False) -> None:
    """Spin ``executor`` until SIGINT / SIGTERM (or ``is_done()``), without letting rclpy
    shut the context down first, so that nodes can still publish while closing."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set() and not is_done() and executor.context.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def init_ros(args: list[str] | None, program: str) -> bool:
    """``rclpy.init`` without rclpy's signal handlers (see ``spin_until_signal``), with
    ``prefer_async_publishing``; False, after one line on stderr, when the command line
    cannot be parsed."""
    prefer_async_publishing()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # rclpy's RCLError: e.g. a malformed -p override
        print(f"{program}: {' '.join(str(exc).split())}", file=sys.stderr)
        return False
    return True


def run_node(program: str, make_node: Callable[[], Any], args: list[str] | None = None,
             is_done: Callable[[Any], bool] | None = None,
             before_destroy: Callable[[Any], None] | None = None) -> int:
    """Init rclpy, build the node, spin it until SIGINT / SIGTERM (or ``is_done(node)``),
    then ``before_destroy(node)``, destroy it and shut down. 0, or 2 after one line on
    stderr when the command line or the parameters are invalid."""
    if not init_ros(args, program):
        return 2
    try:
        node = make_node()
    except (ParameterException, ValueError) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_signal(executor, (lambda: is_done(node)) if is_done else (lambda: False))
    except ExternalShutdownException:
        pass
    finally:
        if before_destroy is not None:
            before_destroy(node)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
