"""Launch files, checked statically (launch and launch_ros cannot run here).

For every launch file: it parses and defines generate_launch_description; every
executable it starts is a console script of this package; every parameter file it names
exists, has a section for the node's name, and every parameter set there or inline is
declared by the node (nodes are instantiated for real to ask them); every launch
argument used is declared.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.node import Node as RosNode

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def console_scripts() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = hdr_dcs." in node.value:
            scripts.add(node.value.split("=")[0].strip())
    return scripts


def node_calls(tree: ast.AST) -> list[dict]:
    """The keyword arguments of every Node(...) call, with literals resolved."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            kw = {k.arg: k.value for k in node.keywords}
            files, inline = [], {}
            for item in getattr(kw.get("parameters"), "elts", []):
                if isinstance(item, ast.Call):  # os.path.join(config, "x.yaml")
                    files += [a.value for a in item.args if isinstance(a, ast.Constant)]
                elif isinstance(item, ast.Dict):
                    inline.update({k.value: v for k, v in zip(item.keys, item.values, strict=True)})
            calls.append({"package": kw["package"].value, "executable": kw["executable"].value,
                          "name": kw["name"].value, "files": files, "inline": inline})
    return calls


def flatten(params: dict, prefix: str = "") -> set[str]:
    names = set()
    for key, value in params.items():
        if isinstance(value, dict):
            names |= flatten(value, f"{prefix}{key}.")
        else:
            names.add(f"{prefix}{key}")
    return names


def declared_parameters(executable: str, name: str) -> set[str]:
    module = importlib.import_module(f"hdr_dcs.nodes.{executable}")
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, RosNode) and c is not RosNode and c.__module__ == module.__name__]
    assert len(classes) == 1, f"{executable}: expected one Node class, found {classes}"
    node = classes[0](name)
    try:
        return set(node._parameters)
    finally:
        stop = getattr(node, "stop", None)
        if stop:
            stop()
        node.destroy_node()


@pytest.fixture(scope="module")
def ros(request):
    rclpy.init()
    request.addfinalizer(rclpy.shutdown)


def test_there_are_launch_files() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"rig.launch.py", "sim_rig.launch.py", "replay.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file(path: Path, ros, ros_domain) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared_args = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                     and getattr(n.func, "id", None) == "DeclareLaunchArgument"}
    used_args = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", None) == "LaunchConfiguration"}
    assert used_args <= declared_args
    scripts = console_scripts()
    calls = node_calls(tree)
    assert calls
    for call in calls:
        assert call["package"] == "hdr_dcs"
        assert call["executable"] in scripts, f"{call['executable']} is not a console script"
        declared = declared_parameters(call["executable"], call["name"])
        for file in call["files"]:
            config = REPO / "config" / file
            assert config.is_file(), f"{file} missing"
            sections = yaml.safe_load(config.read_text())
            section = sections.get(call["name"]) or sections.get("/**")
            assert section and "ros__parameters" in section, f"{file} has no section for {call['name']}"
            unknown = flatten(section["ros__parameters"]) - declared
            assert not unknown, f"{file}: {call['name']} does not declare {sorted(unknown)}"
        assert set(call["inline"]) <= declared, f"{path.name}: undeclared {set(call['inline']) - declared}"
