"""Reproductions of the published studies edgeslim follows (``studies/`` folders, ``edgeslim study``)."""

from edgeslim.studies.claims import CHECKS, Check, Verdict, check_type, parse_check
from edgeslim.studies.study import (
    DEFAULT_ROOT,
    SCALES,
    Claim,
    ClaimResult,
    Scale,
    Study,
    StudyReport,
    dry_run_study,
    find_studies,
    judge,
    judge_study,
    load_study,
    run_study,
    study_rows,
)

__all__ = [
    "CHECKS",
    "DEFAULT_ROOT",
    "SCALES",
    "Check",
    "Claim",
    "ClaimResult",
    "Scale",
    "Study",
    "StudyReport",
    "Verdict",
    "check_type",
    "dry_run_study",
    "find_studies",
    "judge",
    "judge_study",
    "load_study",
    "parse_check",
    "run_study",
    "study_rows",
]
