"""Recordings leave the box: a verified delivery queue to archive targets.

- ``queue``: one row per (call, target) in the catalog; what is due, confirmed, failed (SQL only);
- ``backoff``: when a failed delivery is tried again (pure);
- ``policy``: which calls go to a target (all, or only the gaps the primary did not record);
- ``targets``: where copies go (``file://``, ``s3://``), each confirming and verifying what it stored;
- ``deliver``: the loop that drains the queue (``shadowrec archive``).
"""
