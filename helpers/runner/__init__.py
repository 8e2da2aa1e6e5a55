"""The machinery on top: stamps, the expected-time budget, papermill execution, the runner
(`python -m helpers.run`), HTML/PDF export and the report (`python -m helpers.report`), Colab cells.
May import every other sub-package; none imports it."""
