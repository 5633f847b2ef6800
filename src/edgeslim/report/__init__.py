"""Reports of sweep results and searches: plots (pure functions of records), HTML reports, recommendations.

Everything here reads trial records only (``TrialRecord.to_dict()`` from the store), never
artifacts or live models.
"""

from edgeslim.report.html import ReportFiles, render, render_search, write_report, write_search_report
from edgeslim.report.plots import PLOTS, pareto_front, rows
from edgeslim.report.recommend import Choice, Constraints, Recommendation, recommend

__all__ = [
    "PLOTS",
    "Choice",
    "Constraints",
    "Recommendation",
    "ReportFiles",
    "pareto_front",
    "recommend",
    "render",
    "render_search",
    "rows",
    "write_report",
    "write_search_report",
]
