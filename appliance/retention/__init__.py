"""Retention: which recordings to remove, and removing them (``shadowrec prune``).

- ``plan``: the decision, without I/O: by age, total size and a free-space floor, oldest first;
- ``prune``: reads the catalog, the delivery queue and the files, and removes what the plan says,
  files first, then their catalog and queue rows.
"""
