"""shadowrec's appliance side: status API, VIP takeover, configuration and the service."""

import capture as _capture  # noqa: F401  (its import keeps numpy's BLAS single-threaded: see there)
