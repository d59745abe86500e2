"""SIP and calls: messages, SDP, the dialog state machine, the BiB call table and the evidence
that the primary recorder failed. Pure logic: no I/O, time passed in."""
