"""The failover lab, a tool for tests and demos: a whole site in network namespaces (a CUCM-like
trunk, phones, a primary recorder with keepalived, a mirrored bridge) around ``shadowrec run``."""
