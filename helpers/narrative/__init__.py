"""Report prose: every function that turns measured numbers into the report's sentences.

One module per part of the report (training, reconstruction, classifier, ablations, synthetic
data, summary); they read numbers handed to them and the original report's figures from
helpers.core.reference, and compute nothing that the notebooks have not measured.
"""
