"""Preparing the SPAN interface, and putting it back: link up, receive offloads that merge
packets (GRO, LRO) off. Promiscuous mode comes with the capture socket's membership."""

from __future__ import annotations

import logging

from capture.errors import ConfigError

log = logging.getLogger("shadowrec")
MERGING_OFFLOADS = ("rx-gro", "rx-lro", "rx-gro-hw", "rx-gro-list", "rx-udp-gro-forwarding")


class SpanInterface:
    """Context manager: prepare ``ifname`` on enter, undo exactly what it changed on exit."""

    def __init__(self, ifname: str, offloads_off: bool = True):
        self.ifname = ifname
        self.offloads_off = offloads_off
        self.was_down = False
        self.changed_features: list = []

    def __enter__(self):
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.ifname)
            if not idx:
                raise ConfigError(f"no interface named {self.ifname}")
            link = ipr.get_links(idx[0])[0]
            if not link["flags"] & 1:  # IFF_UP
                ipr.link("set", index=idx[0], state="up")
                self.was_down = True
        if self.offloads_off:
            self._features(False)
        return self

    def _features(self, enable: bool):
        from pyroute2.ethtool import Ethtool

        et = Ethtool()
        try:
            feats = et.get_features(self.ifname)
            names = MERGING_OFFLOADS if not enable else self.changed_features
            todo = {}
            for name in names:
                f = feats.features.get(name)
                if f is not None and f.available and f.enable != enable:
                    todo[name] = f
            for f in todo.values():
                f.enable = enable
            if todo:
                et.set_features(self.ifname, feats)
                if not enable:
                    self.changed_features = list(todo)
        except Exception as e:  # drivers without ethtool support: capture still works
            log.warning("could not change offloads on %s: %s", self.ifname, e)
        finally:
            et.close()

    def __exit__(self, *exc):
        if self.changed_features:
            self._features(True)
        if self.was_down:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.ifname)
                if idx:
                    ipr.link("set", index=idx[0], state="down")
        return False
