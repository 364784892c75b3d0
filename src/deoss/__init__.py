"""DeOSS: a decentralized object storage network."""

__version__ = "0.1.0"
