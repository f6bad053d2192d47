"""Clinical statistics for a classifier and its exported artifacts (torch-free: numpy, scipy, scikit-learn).

What a clinic asks of a triage model, in one place that training and `edgekd verify` both use:
`metrics` (per-class sensitivity, specificity, PPV, NPV, F1, AUC with stratified-bootstrap intervals),
`calibration` (temperature scaling, ECE, Brier, NLL), `gate` (the paired non-inferiority verdict of an
artifact against its reference), `operating_point` (a threshold for a target sensitivity) and `plots`
(reliability diagram, ROC curves, row-normalised confusion matrix). `bootstrap` holds the resampling
they share.
"""
