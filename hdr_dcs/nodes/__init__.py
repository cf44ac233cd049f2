"""ROS 2 nodes: thin shells over the core (parameters, message conversion, QoS,
diagnostics, threading). The only subpackage that imports rclpy."""
