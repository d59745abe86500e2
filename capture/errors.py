"""One exception hierarchy for everything shadowrec parses or records.

Every parser raises a subclass of :class:`ParseError` with a message that says what was
wrong and where; the capture loop catches :class:`ParseError`, counts it under the class
name and carries on, so bad input never stops a recording.
"""


class CaptureError(Exception):
    """Base of every error shadowrec raises on purpose."""


class ParseError(CaptureError):
    """Input that does not follow its protocol."""


class Truncated(ParseError):
    """Input shorter than its own headers say it is."""


class Unsupported(ParseError):
    """Well-formed input that shadowrec does not handle (a link type, a codec...)."""


class PcapError(ParseError):
    """A capture file that is corrupt or not a capture file at all."""


class SipError(ParseError):
    """A malformed SIP message."""


class SdpError(ParseError):
    """A malformed SDP body."""


class ConfigError(CaptureError):
    """Settings that cannot work."""


class InterfaceError(CaptureError):
    """The capture interface went away or its socket failed."""
