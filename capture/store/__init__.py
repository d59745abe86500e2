"""The store: the writer (synchronous or queued I/O), per-call outputs, the sidecar record,
the catalog and resuming open calls after a restart."""
