"""The client's version: the distribution's metadata and the User-Agent read it from here."""

__version__ = "0.1.0"
