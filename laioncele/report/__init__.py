"""What a built dataset says about itself: statistics as Polars frames, the QA report, the dataset card, and the
image-level check against a sample's truth.

Modules: ``stats`` (``overview``, ``funnel``, ``drop_reasons``, ``identity_summary``, ``scan_stage`` ...),
``html`` (the static QA report: ``write_report``), ``dataset_card`` (``write_card``, ``render_card``),
``truth_check`` (``truth_check``). ``laioncele.report.X`` is ``laioncele.report.html.X``.
"""

from laioncele._moved import lazy_facade

__getattr__ = lazy_facade(__name__, "laioncele.report.html")
