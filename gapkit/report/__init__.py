"""Figures, tables and the claims table, from saved results only (no training here).

* :mod:`gapkit.report.figures`: Figures 2, 3, 4(a), 4(b), the Table 1 accuracy bars, data examples
* :mod:`gapkit.report.tables`: Tables 1-3 and the GMM parameters next to the paper's numbers
* :mod:`gapkit.report.claims`: each claim of the paper, what was measured, whether it holds here
"""
