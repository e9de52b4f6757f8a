"""Analysis layer (numpy, scipy, pandas, seaborn; no torch): typed records of the stages' outputs,
statistics over seeds, comparisons, the claims and their report, figures."""
