"""Helper run inside a lab namespace: print (or set) an interface's up/promisc/GRO state as JSON."""

import json
import sys

from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool

name = sys.argv[1]
if len(sys.argv) > 2 and sys.argv[2] == "gro-on":
    et = Ethtool()
    feats = et.get_features(name)
    feats.features["rx-gro"].enable = True
    et.set_features(name, feats)
with IPRoute() as ipr:
    link = ipr.get_links(ipr.link_lookup(ifname=name)[0])[0]
f = Ethtool().get_features(name).features
print(
    json.dumps(
        {
            "up": bool(link["flags"] & 1),
            "promisc": (link.get_attr("IFLA_PROMISCUITY") or 0) > 0,
            "gro": f["rx-gro"].enable,
        }
    )
)
