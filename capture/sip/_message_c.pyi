# The C SIP message parser (ext/sip.pyx): the twin of capture.sip.message.parse.
from typing import Any

from capture.sip.message import SipMessage

def parse(data: Any) -> SipMessage: ...
