"""hdr_dcs: ament_python package (colcon) and a plain pip-installable distribution."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "hdr_dcs"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Stable HDR video from a dual-camera rig: ROS 2 nodes, models and tools",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*.pt", "weights/*.json", "weights/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/calibration", glob("config/calibration/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
    ],
    # Dependencies are declared in package.xml (rosdep) and pinned in requirements.txt.
    install_requires=[],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "hdr-dcs = hdr_dcs.cli.main:main",
            "camera_node = hdr_dcs.nodes.camera_node:main",
            "calibration_node = hdr_dcs.nodes.calibration_node:main",
            "reconstruction_node = hdr_dcs.nodes.reconstruction_node:main",
            "bag_player = hdr_dcs.nodes.bag_player:main",
        ],
    },
)
