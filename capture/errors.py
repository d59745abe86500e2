"""One exception hierarchy for everything shadowrec parses or records.

Every parser raises a subclass of :class:`ParseError` with a message that says what was
wrong and where; the capture loop catches :class:`ParseError`, counts it under the class
name and carries on, so bad input never stops a recording::

    CaptureError
    ├── ParseError
    │   ├── Truncated       a frame, an ICMP quote, a SIP message shorter than it says
    │   ├── Unsupported     well-formed, but not handled (a link type, an ethertype)
    │   ├── PcapError       a capture file that is corrupt or not one
    │   ├── SipError        a malformed SIP message
    │   ├── SdpError        a malformed SDP body
    │   └── RtpError        a malformed RTP header or telephone-event payload
    ├── ConfigError         settings that cannot work
    └── InterfaceError      the capture interface went away
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


class RtpError(ParseError):
    """An RTP packet (or its telephone-event payload) shorter or otherwise other than its header says."""


class ConfigError(CaptureError):
    """Settings that cannot work."""


class InterfaceError(CaptureError):
    """The capture interface went away or its socket failed."""
