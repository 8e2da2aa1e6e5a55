"""Training: checkpoints, inference helpers, `fit()` (precision, resume, progress), the shared work
of notebooks 03/04 and loading their trained models. Imports core, model, config and data."""
