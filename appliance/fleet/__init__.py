"""The fleet: several appliances' calls in one catalog on PostgreSQL (``--catalog postgresql://...``).

Each appliance records into its own SQLite catalog as always (``capture.store.catalog``), which
numbers every change; ``push`` ships the changes, in order, to PostgreSQL, so recording never
waits for the database and rows simply wait while it is unreachable. There, the copies of one
call that several appliances recorded are one row (``identity``: CUCM's cluster, the refci pair
and when it began), listing every copy and naming the best (``store``)."""
