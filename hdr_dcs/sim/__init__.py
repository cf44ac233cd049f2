"""Simulation of the dual-camera rig: HDR scenes with ground truth, camera models, timing."""
