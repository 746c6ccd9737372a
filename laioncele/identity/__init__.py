"""Identity cleaning (stage identities): each name's faces down to one true person.

Modules: ``clean`` (``clean_identities``, ``IdentityResult``, ``thresholds_for``), ``inputs`` (faces table ->
arrays, ``read_faces``), ``graph`` (vectorised similarity-graph primitives), ``merge`` (partition by name, clean
each partition, merge). ``laioncele.identity.X`` is ``laioncele.identity.clean.X``.
"""

from laioncele._moved import lazy_facade

__getattr__ = lazy_facade(__name__, "laioncele.identity.clean")
