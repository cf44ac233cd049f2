"""Errors raised by hdr_dcs; each carries a one-line message fit for a user."""


class HdrDcsError(Exception):
    """Base class of every error hdr_dcs raises on purpose."""


class InputError(HdrDcsError, ValueError):
    """Input that is malformed: wrong shape, dtype, encoding, non-finite values..."""


class ImageEncodingError(InputError):
    """A sensor_msgs/Image whose encoding or sizes cannot be converted."""


class ExrError(InputError):
    """An EXR file that cannot be read as an RGB(A) or Y image."""
