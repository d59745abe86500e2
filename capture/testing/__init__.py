"""Tools for tests, demos and benchmarks, never on the recording path: synthetic BiB traffic
with the exact audio expected, and replaying a capture out of an interface."""
