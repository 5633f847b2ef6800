"""Reports of sweep results: plots (pure functions of records), the HTML report, recommendations.

Everything here reads trial records only (``TrialRecord.to_dict()`` from the store), never
artifacts or live models.
"""

from edgeslim.report.html import ReportFiles, render, write_report
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
    "rows",
    "write_report",
]
