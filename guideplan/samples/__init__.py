"""Synthetic sample cases: a torso phantom sampled as planning CT, prior CT and MR.

Use :func:`generate_samples` (``guideplan sample --out DIR``). The data are synthetic,
deterministic and come with exact ground truth in each case's ``truth/`` folder.
"""

from guideplan.samples.cases import CASE_NAMES
from guideplan.samples.generate import generate_samples

__all__ = ["CASE_NAMES", "generate_samples"]
