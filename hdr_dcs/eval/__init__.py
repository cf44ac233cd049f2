"""Offline evaluation: the pipeline over recorded bags, metrics reports and plots.

- :mod:`.bagrun`: ``run_bag`` feeds a bag's messages to the reconstruction pipeline in
  log-time order and yields one frame per reference frame (``hdr-dcs reconstruct``).
- :mod:`.report`: scoring against ground truth or without it, the JSON report, the
  summary table (``hdr-dcs evaluate``).
- :mod:`.plots`: luminance / PSNR-mu over time and example-frame strips (matplotlib Agg).

Never imports rclpy.
"""
