"""shadowrec: passive recording of Cisco Built-in-Bridge calls from a SPAN port."""

__version__ = "0.1.0"
