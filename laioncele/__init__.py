"""LaionCele: the library behind the identity-name dataset (schemas, shards, stages' logic). No Ray imports here."""

__version__ = "0.1.0"
