"""Training data for the learned backends (LoCAtion, DCS/EAFNet).

The pieces, from recordings to batches:

- ``recording``: ``Recording`` (reference frames, raw anchor frames, calibrations,
  optional ground truth) and ``recording_from_bag`` for rosbag2 bags with SPEC.md topics.
  ``sim.rig.RigSequence`` and ``folder.StoredSequence`` have the same attributes.
- ``windows``: recordings -> ``Window``s: T consecutive reference frames (default 5, the
  LoCAtion setting) sharing one low + high anchor pair registered into the reference grid,
  their exposure scales t * g, stamps, ground-truth radiance, and ``alt_anchors`` (the
  neighbouring pair, for the anchor consistency loss). T = 1 is the per-frame (DCS/EAFNet)
  setting. ``plan_windows`` works on metadata only; ``assemble_window`` loads pixels.
- ``folder``: the on-disk sequence format (meta.json + 8/16-bit PNGs that round-trip the
  frames exactly + EXR half ground truth), written atomically via ``<folder>.tmp``.
- ``augment``: one crop / flip / quarter turn for a whole window, and the rig
  randomisation at simulation time (EV spacing, noise, bit depth, gain, exposure level...).
- ``dataset`` (imports torch): ``SimulatedWindows`` streams simulated windows from
  procedural scenes (training seeds only, never EVALUATION_SCENES), deterministic per
  (seed, epoch, sample); ``FolderWindows`` indexes sequence folders; both yield dicts of
  channels-first tensors (shapes and units in ``dataset``'s docstring).
- ``vimeo``: converts Vimeo-90K septuplets or any folders of ordered LDR frames into
  sequence folders (linearise, expand highlights, re-expose per stream with noise);
  resumable; ``python -m hdr_dcs.data.vimeo SRC DST``.

Units follow SPEC.md: pixel values L in [0, 1]; scales t * g in seconds; radiance
H = f^-1(L) / (t * g). Nothing here imports rclpy; only ``dataset`` imports torch.
"""
