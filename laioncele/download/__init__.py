"""The download stage's library: fetch untrusted URLs politely and safely, and store what comes back as images.

Modules: ``fetch`` (``Downloader``, ``HostScheduler``, ``OptOutMatcher``, ``FetchFailure``, ``as_table``),
``netsafety`` (SSRF defence: ``check_url``, ``resolve_checked``), ``images`` (validation and re-encoding:
``ImageEncoder``, ``ImageRejected``). ``laioncele.download.X`` is ``laioncele.download.fetch.X``.
"""

from laioncele._moved import lazy_facade

__getattr__ = lazy_facade(__name__, "laioncele.download.fetch")
