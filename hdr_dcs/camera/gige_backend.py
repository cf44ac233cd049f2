"""A GigE Vision camera through Aravis (PyGObject), as a ``CameraBackend``.

Opening: by serial number, IP address or Aravis device id (``device``), or the first
camera found. Configured on open: pixel format, region, packet size (negotiated when 0),
packet resend and timeouts, frame rate, gain and the exposure control below.

Exposure control (``exposure_control``), per role:

- reference: a fixed exposure (``exposure_us``) or, with ``auto_exposure``, a slow auto
  exposure (``exposure.SlowAutoExposure``) that changes it at most once per
  ``AE_INTERVAL_S``, never alternating. The camera free-runs at ``frame_rate_hz``.
- anchor, ``sequencer``: the GenICam sequencer alternates two sets (low, high) in the
  camera, and every frame's exposure is read from its chunk data (ChunkExposureTime);
  a frame without it is dropped as "exposure uncertain". Used by ``auto`` when the device
  has SequencerMode and ChunkExposureTime. (Written to SFNC; no such device is reachable
  here, so this path is untested.)
- anchor, ``trigger``: software switching made certain. The camera runs in software
  trigger mode; before each trigger the backend writes ExposureTime and reads it back,
  so every frame is known to have the exposure read back. After a trigger times out,
  frames that may still belong to it are dropped as "exposure uncertain". The host paces
  the triggers at ``frame_rate_hz``. Used by ``auto`` otherwise.
- ``free_run`` (either role): the camera free-runs; after an exposure write, frames that
  may have started before it took effect (received within one frame period plus both
  exposures) are dropped as "exposure uncertain". For the anchor this drops about every
  other frame: prefer ``trigger``.

An anchor's exposures are ``base * 2**ev_low`` and ``base * 2**ev_high`` where the base is
``exposure_us`` until ``set_reference_exposure`` gives the reference camera's (the node
passes the reference's ExposureInfo when ``gige.follow_reference`` is set).

Stamps: ``stamps.ClockMapper`` (PTP when enabled and locked, else the camera clock mapped
onto the host clock). Frames with a non-success buffer status (missing packets, timeout,
size mismatch...) are dropped and counted by status; the stream's statistics (resent and
missing packets) are in ``status_values()``. A camera that stops answering (Aravis'
control-lost, or its registers unreadable) or a stream from which no buffer at all arrives
for ``timeout_s`` raises ``CameraError`` from ``grab``; the node then closes and reopens
until it is back. Buffers that arrive but are dropped keep it open (a lossy link is
reported by the drop counts; reconnecting would not help it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from hdr_dcs.camera import CameraError, CapturedFrame, NsClock, system_clock_ns
from hdr_dcs.camera.exposure import AnchorExposures, SlowAutoExposure, clamp_exposure_us
from hdr_dcs.camera.pixels import PIXEL_FORMATS, decode_pixels
from hdr_dcs.camera.stamps import LATCHES, ClockMapper
from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.types import Role

__all__ = ["EXPOSURE_CONTROLS", "GigECameraBackend", "GigESettings", "import_aravis"]

EXPOSURE_CONTROLS = ("auto", "sequencer", "trigger", "free_run")
AE_INTERVAL_S = 1.0
_BUFFERS = 8
_POP_SLICE_S = 0.05  # grab waits in slices this long so that close() is seen promptly


def import_aravis() -> tuple[Any, Any]:
    """(Aravis, GLib) from PyGObject, or CameraError with what to install."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis, GLib
    except (ImportError, ValueError) as exc:
        raise CameraError(f"Aravis is not available ({exc}); install gir1.2-aravis-0.8 and "
                          "pygobject (scripts/setup.sh does)") from None
    return Aravis, GLib


@dataclass(frozen=True)
class GigESettings:
    """The ``gige.*`` parameters of a camera node (see the module docstring).

    Attributes:
        device: serial number, IP address or Aravis device id; "" = the first camera found.
        pixel_format: PFNC name (Mono8, BayerRG12, RGB8...); "" = keep the camera's.
        region: [x, y, width, height] px; width or height 0 = keep the camera's region.
        frame_rate_hz: acquisition rate (reference) or trigger rate (anchor, trigger), Hz.
        gain_db: analog gain, dB (the camera's Gain feature).
        exposure_us: the reference exposure; for the anchor, the base of its EV offsets
            until the reference camera's exposure is known.
        ev_low, ev_high: the anchor's offsets from the base, stops.
        exposure_control: auto, sequencer, trigger or free_run.
        auto_exposure: reference only: slow auto exposure from ``exposure_us``.
        packet_size: GVSP packet size, bytes; 0 = negotiate the largest the path carries.
        packet_resend: ask the camera to resend lost packets.
        packet_timeout_ms, frame_retention_ms: the stream's resend timings.
        timeout_s: no frame for this long: check the camera; unreadable = disconnected.
        latch: where the camera latches its timestamp (``stamps.LATCHES``).
        link_mbps: link rate for the transfer-time part of the stamp correction, Mbit/s.
    """

    device: str = ""
    pixel_format: str = ""
    region: tuple[int, int, int, int] = (0, 0, 0, 0)
    frame_rate_hz: float = 30.0
    gain_db: float = 0.0
    exposure_us: float = 10000.0
    ev_low: float = -2.0
    ev_high: float = 2.0
    exposure_control: str = "auto"
    auto_exposure: bool = False
    packet_size: int = 0
    packet_resend: bool = True
    packet_timeout_ms: float = 20.0
    frame_retention_ms: float = 100.0
    timeout_s: float = 2.0
    latch: str = "exposure_start"
    link_mbps: float = 1000.0

    def validate(self, camera: str) -> str | None:
        """Why these settings cannot work for ``camera``, or None."""
        if self.pixel_format and self.pixel_format not in PIXEL_FORMATS:
            return f"gige.pixel_format {self.pixel_format!r} is not supported; use one of " \
                   f"{', '.join(sorted(PIXEL_FORMATS))} or '' to keep the camera's"
        if len(self.region) != 4 or any(v < 0 for v in self.region):
            return f"gige.region must be [x, y, width, height] >= 0, got {list(self.region)}"
        if not 0 < self.frame_rate_hz <= 1000:
            return f"gige.frame_rate_hz must be in (0, 1000], got {self.frame_rate_hz}"
        if not self.exposure_us > 0:
            return f"gige.exposure_us must be > 0, got {self.exposure_us}"
        if not -10 <= self.ev_low <= 0 <= self.ev_high <= 10 or self.ev_low == self.ev_high:
            return f"gige.ev_low / gige.ev_high must satisfy -10 <= ev_low <= 0 <= ev_high <= 10 " \
                   f"and differ, got {self.ev_low} / {self.ev_high}"
        if self.exposure_control not in EXPOSURE_CONTROLS:
            return f"gige.exposure_control must be one of {', '.join(EXPOSURE_CONTROLS)}, " \
                   f"got {self.exposure_control!r}"
        if camera == "reference" and self.exposure_control in ("sequencer", "trigger"):
            return "gige.exposure_control sequencer / trigger alternate exposures: anchor camera only"
        if camera == "anchor" and self.auto_exposure:
            return "gige.auto_exposure is for the reference camera; the anchor follows it by EV offsets"
        if self.packet_size and not 576 <= self.packet_size <= 16384:
            return f"gige.packet_size must be 0 (negotiate) or 576..16384 bytes, got {self.packet_size}"
        if self.packet_timeout_ms <= 0 or self.frame_retention_ms <= 0 or self.timeout_s <= 0:
            return "gige.packet_timeout_ms, gige.frame_retention_ms and gige.timeout_s must be > 0"
        if self.latch not in LATCHES:
            return f"gige.latch must be one of {', '.join(LATCHES)}, got {self.latch!r}"
        if self.link_mbps <= 0:
            return f"gige.link_mbps must be > 0, got {self.link_mbps}"
        return None


class GigECameraBackend:
    """``CameraBackend`` over one GigE Vision camera (see the module docstring)."""

    def __init__(self, camera: str, settings: GigESettings, clock: NsClock = system_clock_ns) -> None:
        reason = settings.validate(camera)
        if reason is not None:
            raise CameraError(reason)
        self._camera_name = camera
        self.settings = settings
        self._clock = clock
        self._closed = threading.Event()
        self._lost = threading.Event()
        self._lock = threading.Lock()  # Aravis calls from grab vs close
        self._cam: Any = None
        self._stream: Any = None
        self._chunks: Any = None
        self._glib_error: type[BaseException] = Exception
        self._drops: dict[str, int] = {}
        self._mapper = ClockMapper(latch=settings.latch, link_bps=settings.link_mbps * 1e6)
        self._description = f"GigE {settings.device or '(first found)'}"
        self._mode = ""
        self._stamp_source = ""
        self._base_us = settings.exposure_us
        self._exposure_us = settings.exposure_us  # read back, the one frames now get
        self._bounds_us = (1.0, 1e7)
        self._gain_db = settings.gain_db
        self._ae = SlowAutoExposure() if settings.auto_exposure else None
        self._ae_last_s = 0.0
        self._uncertain_until_ns = 0
        self._trigger: tuple[Role, float, int] | None = None  # (role, exposure_us, trigger time ns)
        self._last_role: Role | None = None
        self._next_trigger_s = 0.0
        self._last_frame_s = 0.0
        self._last_block: int | None = None
        self._sequence = 0
        self._ptp = False
        self._format = "Mono8"

    # -- protocol --------------------------------------------------------------------------
    @property
    def camera(self) -> str:
        return self._camera_name

    @property
    def description(self) -> str:
        return self._description

    def calibration(self) -> CameraCalibration | None:
        return None

    def drop_counts(self) -> dict[str, int]:
        return dict(self._drops)

    def status_values(self) -> dict[str, str]:
        """Extra diagnostics: exposure control, stamp source, stream statistics."""
        values = {"exposure control": self._mode, "stamps": self._stamp_source or "(no frame yet)"}
        offset = self._mapper.offset_ns
        if offset is not None and not self._ptp:
            values["camera clock offset (s)"] = f"{offset * 1e-9:.6f}"
        stream = self._stream
        if stream is not None:
            with self._lock:
                try:
                    for i in range(stream.get_n_infos()):
                        name = stream.get_info_name(i)
                        if name in ("n_resent_packets", "n_missing_packets", "n_resend_requests",
                                    "n_completed_buffers", "n_underruns"):
                            values[f"stream {name[2:].replace('_', ' ')}"] = str(stream.get_info_uint64(i))
                except self._glib_error:
                    pass
        return values

    def set_reference_exposure(self, exposure_us: float, gain_db: float | None = None) -> None:
        """The reference camera's current exposure: the anchor's EV offsets apply to it."""
        if exposure_us > 0:
            self._base_us = float(exposure_us)

    def open(self) -> None:
        aravis, glib = import_aravis()
        self._glib_error = glib.Error
        self._closed.clear()
        self._lost.clear()
        try:
            device_id = self._find(aravis)
            cam = aravis.Camera.new(device_id)
            self._cam = cam
            self._configure(aravis, cam)
            self._stream = cam.create_stream(None, None)
            self._configure_stream(aravis)
            payload = cam.get_payload()
            for _ in range(_BUFFERS):
                self._stream.push_buffer(aravis.Buffer.new_allocate(payload))
            cam.get_device().connect("control-lost", lambda *_: self._lost.set())
            cam.start_acquisition()
        except glib.Error as exc:
            self.close()
            raise CameraError(f"{self._description}: {exc.message}") from None
        except CameraError:
            self.close()
            raise
        now = time.monotonic()
        self._last_frame_s = self._next_trigger_s = self._ae_last_s = now
        self._mapper.reset()
        self._last_block, self._trigger = None, None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            cam, self._cam = self._cam, None
            self._stream = None
            self._chunks = None
            if cam is not None:
                try:
                    cam.stop_acquisition()
                except self._glib_error:
                    pass  # a camera that is gone cannot be stopped

    def grab(self, timeout_s: float) -> CapturedFrame | None:
        deadline = time.monotonic() + timeout_s
        while not self._closed.is_set():
            if self._lost.is_set():
                raise CameraError(f"{self._description}: control lost (disconnected or powered off)")
            if self._mode == "trigger" and self._trigger is None and not self._fire_trigger(deadline):
                return None
            frame = self._pop(min(_POP_SLICE_S, max(deadline - time.monotonic(), 0.0)))
            if frame is not None:
                return frame
            if time.monotonic() >= deadline:
                return None
        return None

    # -- opening ---------------------------------------------------------------------------
    def _find(self, aravis: Any) -> str:
        aravis.update_device_list()
        seen = []
        for i in range(aravis.get_n_devices()):
            ids = (aravis.get_device_id(i), aravis.get_device_address(i) or "",
                   aravis.get_device_serial_nbr(i) or "")
            seen.append(f"{ids[2] or ids[0]} at {ids[1]}")
            if not self.settings.device or self.settings.device in ids:
                self._description = f"{aravis.get_device_vendor(i)} {aravis.get_device_model(i)} " \
                                    f"serial {ids[2]} at {ids[1]}"
                return ids[0]
        # Cameras on other subnets do not answer discovery; an address may still connect.
        if self.settings.device.count(".") == 3:
            return self.settings.device
        found = "; seen: " + ", ".join(seen) if seen else " (no GigE camera answered discovery)"
        raise CameraError(f"camera {self.settings.device or '(any)'} not found{found}")

    def _configure(self, aravis: Any, cam: Any) -> None:
        s = self.settings
        dev = cam.get_device()
        if s.pixel_format:
            available = list(cam.dup_available_pixel_formats_as_strings())
            if s.pixel_format not in available:
                raise CameraError(f"pixel format {s.pixel_format} not offered by the camera: {', '.join(available)}")
            cam.set_pixel_format_from_string(s.pixel_format)
        fmt = cam.get_pixel_format_as_string()
        if fmt not in PIXEL_FORMATS:
            raise CameraError(f"the camera streams {fmt}, which is not supported; set gige.pixel_format")
        self._format = fmt
        if s.region[2] and s.region[3]:
            cam.set_region(*s.region)
        if s.packet_size:
            cam.gv_set_packet_size(s.packet_size)
        else:
            cam.gv_auto_packet_size()
        if cam.is_gain_available():
            low, high = cam.get_gain_bounds()
            cam.set_gain(min(max(s.gain_db, low), high))
            self._gain_db = float(cam.get_gain())
        self._bounds_us = tuple(float(v) for v in cam.get_exposure_time_bounds())
        if cam.is_exposure_auto_available():
            cam.set_exposure_time_auto(aravis.Auto.OFF)
        self._mode = self._choose_mode(dev)
        if self._mode == "trigger":
            if not cam.is_software_trigger_supported():
                raise CameraError("the camera has no software trigger; use gige.exposure_control free_run")
            cam.set_trigger("Software")
        else:
            cam.clear_triggers()
            if cam.is_frame_rate_available():
                low, high = cam.get_frame_rate_bounds()
                cam.set_frame_rate(min(max(s.frame_rate_hz, low), high))
        self._last_role = None if self._mode == "trigger" else Role.LOW
        start_us = self._base_us if self._camera_name == "reference" else \
            AnchorExposures(self._base_us, s.ev_low, s.ev_high, self._bounds_us).exposure_us(Role.LOW)
        self._exposure_us = self._write_exposure(start_us)
        if self._mode == "sequencer":
            self._configure_sequencer(aravis, cam)
        self._ptp = self._ptp_locked(dev)
        region = cam.get_region()
        self._description += f", {fmt} {region.width}x{region.height}, {self._mode}"

    def _choose_mode(self, dev: Any) -> str:
        mode = self.settings.exposure_control
        if self._camera_name == "reference":
            return "free_run"
        has_sequencer = dev.is_feature_available("SequencerMode") and dev.is_feature_available("ChunkExposureTime")
        if mode == "sequencer" and not has_sequencer:
            raise CameraError("gige.exposure_control sequencer: the camera has no SequencerMode with "
                              "ChunkExposureTime; use trigger")
        if mode == "auto":
            return "sequencer" if has_sequencer else "trigger"
        return mode

    def _configure_sequencer(self, aravis: Any, cam: Any) -> None:
        """Two sequencer sets (low, high) that follow each other on every frame start,
        with the exposure of each frame in its chunk data (SFNC names)."""
        dev = cam.get_device()
        anchors = AnchorExposures(self._base_us, self.settings.ev_low, self.settings.ev_high, self._bounds_us)
        dev.set_string_feature_value("SequencerMode", "Off")
        dev.set_string_feature_value("SequencerConfigurationMode", "On")
        for index, role in enumerate((Role.LOW, Role.HIGH)):
            dev.set_integer_feature_value("SequencerSetSelector", index)
            cam.set_exposure_time(anchors.exposure_us(role))
            dev.set_integer_feature_value("SequencerPathSelector", 0)
            dev.set_integer_feature_value("SequencerSetNext", 1 - index)
            dev.set_string_feature_value("SequencerTriggerSource", "FrameStart")
            dev.execute_command("SequencerSetSave")
        dev.set_integer_feature_value("SequencerSetStart", 0)
        dev.set_string_feature_value("SequencerConfigurationMode", "Off")
        dev.set_string_feature_value("SequencerMode", "On")
        cam.set_chunk_mode(True)
        cam.set_chunk_state("ExposureTime", True)
        self._chunks = cam.create_chunk_parser()

    @staticmethod
    def _ptp_locked(dev: Any) -> bool:
        for enable, status in (("PtpEnable", "PtpStatus"), ("GevIEEE1588", "GevIEEE1588Status")):
            if dev.is_feature_available(enable) and dev.is_feature_available(status):
                if dev.get_boolean_feature_value(enable):
                    return dev.get_string_feature_value(status) in ("Slave", "Master")
        return False

    def _configure_stream(self, aravis: Any) -> None:
        s, stream = self.settings, self._stream
        if not hasattr(aravis, "GvStream") or not isinstance(stream, aravis.GvStream):
            return
        resend = aravis.GvStreamPacketResend.ALWAYS if s.packet_resend else aravis.GvStreamPacketResend.NEVER
        stream.set_property("packet-resend", resend)
        stream.set_property("packet-timeout", int(s.packet_timeout_ms * 1000))
        stream.set_property("frame-retention", int(s.frame_retention_ms * 1000))

    # -- exposure --------------------------------------------------------------------------
    def _write_exposure(self, value_us: float) -> float:
        """Write ExposureTime and return what the camera reports back, us."""
        cam = self._cam
        cam.set_exposure_time(clamp_exposure_us(value_us, self._bounds_us))
        return float(cam.get_exposure_time())

    def _fire_trigger(self, deadline: float) -> bool:
        """Set the next anchor exposure, read it back, and trigger at the paced time.
        False when the deadline comes first."""
        wait = self._next_trigger_s - time.monotonic()
        if wait > 0:
            if self._closed.wait(min(wait, max(deadline - time.monotonic(), 0.0))) or time.monotonic() < self._next_trigger_s:
                return False
        role = AnchorExposures.next_role(self._last_role)
        anchors = AnchorExposures(self._base_us, self.settings.ev_low, self.settings.ev_high, self._bounds_us)
        with self._lock:
            if self._cam is None:
                return False
            try:
                exposure = self._write_exposure(anchors.exposure_us(role))
                self._cam.software_trigger()
            except self._glib_error as exc:
                raise CameraError(f"{self._description}: not answering ({exc.message})") from None
        self._trigger = (role, exposure, self._clock())
        self._last_role = role
        self._next_trigger_s = max(self._next_trigger_s + 1.0 / self.settings.frame_rate_hz, time.monotonic())
        return True

    def _free_run_exposure(self, pixels: Any) -> None:
        """After a free-running frame: the anchor switches to its other exposure; the
        reference's slow auto exposure changes at most once per AE_INTERVAL_S."""
        now = time.monotonic()
        if self._camera_name == "anchor":
            self._last_role = AnchorExposures.next_role(self._last_role or Role.LOW)
            new = AnchorExposures(self._base_us, self.settings.ev_low, self.settings.ev_high,
                                  self._bounds_us).exposure_us(self._last_role)
        else:
            if self._ae is None or now - self._ae_last_s < AE_INTERVAL_S:
                return
            # dt capped: a stalled capture loop must not turn into one big jump
            new = self._ae.update(pixels, self._exposure_us, min(now - self._ae_last_s, AE_INTERVAL_S),
                                  self._bounds_us)
            self._ae_last_s = now
            if new is None:
                return
        old = self._exposure_us
        with self._lock:
            if self._cam is None:
                return
            self._exposure_us = self._write_exposure(new)
        # Frames that may have started before the write landed: up to one frame period
        # plus the longer exposure, and a margin for the latency the clock mapping cannot see.
        span_s = 1.0 / self.settings.frame_rate_hz + max(old, self._exposure_us) * 1e-6 + 0.010
        self._uncertain_until_ns = self._clock() + int(span_s * 1e9)

    # -- frames ----------------------------------------------------------------------------
    def _drop(self, reason: str) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def _pop(self, wait_s: float) -> CapturedFrame | None:
        with self._lock:
            stream = self._stream
        if stream is None:
            return None
        buffer = stream.timeout_pop_buffer(max(int(wait_s * 1e6), 1))
        if buffer is None:
            self._check_alive()
            return None
        # Any buffer, even one dropped below, shows the camera and the path are alive: a
        # lossy link is reported through the drop counts, not by reconnecting.
        self._last_frame_s = time.monotonic()
        try:
            return self._frame(buffer)
        finally:
            with self._lock:
                if self._stream is stream:
                    stream.push_buffer(buffer)

    def _check_alive(self) -> None:
        now = time.monotonic()
        if self._mode == "trigger" and self._trigger is not None:
            waited = (self._clock() - self._trigger[2]) * 1e-9
            if waited > max(4.0 / self.settings.frame_rate_hz, 0.5):
                # The triggered frame is late or lost: a frame arriving now could be it
                # or the next trigger's, so everything until the stream is quiet is uncertain.
                self._drop("trigger timeout")
                self._trigger = None
                self._uncertain_until_ns = self._clock() + int(0.2e9)
        if now - self._last_frame_s < self.settings.timeout_s:
            return
        with self._lock:
            cam = self._cam
            if cam is None:
                return
            try:
                cam.get_exposure_time()
            except self._glib_error as exc:
                raise CameraError(f"{self._description}: not answering ({exc.message})") from None
        self._last_frame_s = now
        drops = ", ".join(f"{n} {reason}" for reason, n in sorted(self._drops.items())) or "none dropped"
        raise CameraError(f"{self._description}: no frame for {self.settings.timeout_s:g} s "
                          f"({drops} so far; check the network path and packet size)")

    def _sequence_id(self, block: int) -> int:
        """GigE block ids are 16-bit (GEV 1.x, 0 reserved) or 64-bit; this counter never wraps."""
        if self._last_block is not None and block:
            span = 0xFFFF if self._last_block <= 0xFFFF and block <= 0xFFFF else 1 << 64
            self._sequence += (block - self._last_block) % span
        self._last_block = block
        return self._sequence

    def _frame(self, buffer: Any) -> CapturedFrame | None:
        receive_ns = self._clock() - time.time_ns() + buffer.get_system_timestamp()
        status = buffer.get_status()
        sequence_id = self._sequence_id(int(buffer.get_frame_id()))
        if status.value_nick != "success":
            self._drop(status.value_nick.replace("-", " "))
            if self._mode == "trigger":
                self._trigger = None
            return None
        if self._mode == "trigger":
            if self._trigger is None or receive_ns < self._uncertain_until_ns:
                self._drop("exposure uncertain")
                return None
            role, exposure_us, _ = self._trigger
            self._trigger = None
        elif self._mode == "sequencer":
            try:
                exposure_us = float(self._chunks.get_float_value(buffer, "ChunkExposureTime"))
            except self._glib_error:
                self._drop("exposure uncertain")
                return None
            anchors = AnchorExposures(self._base_us, self.settings.ev_low, self.settings.ev_high, self._bounds_us)
            role = min((Role.LOW, Role.HIGH), key=lambda r: abs(anchors.exposure_us(r) - exposure_us))
        else:
            exposure_us = self._exposure_us
            role = Role.REFERENCE if self._camera_name == "reference" else (self._last_role or Role.LOW)
        try:
            # get_data copies, so the buffer can go back to the stream at once
            pixels = decode_pixels(buffer.get_data(), self._format, buffer.get_image_width(),
                                   buffer.get_image_height())
        except CameraError:
            self._drop("malformed buffer")
            return None
        result = self._mapper.stamp(int(buffer.get_timestamp()), receive_ns, exposure_us * 1e-6,
                                    pixels.nbytes, self._ptp)
        self._stamp_source = result.source
        # Free run: judged by when the frame started (its camera timestamp on the host
        # clock), not by when it arrived, which a busy host can delay arbitrarily.
        if self._mode == "free_run" and result.stamp_ns - exposure_us * 500 < self._uncertain_until_ns:
            self._drop("exposure uncertain")
            return None
        if self._mode == "free_run":
            self._free_run_exposure(pixels)
        return CapturedFrame(pixels=pixels, stamp_ns=result.stamp_ns, role=role, exposure_time_s=exposure_us * 1e-6,
                             gain_db=self._gain_db, sequence_id=sequence_id, bit_depth=PIXEL_FORMATS[self._format].bits,
                             delay_s=max(result.delay_s, 0.0))
