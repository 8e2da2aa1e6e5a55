"""Studies beyond the original report: ablations (notebook 08), synthetic frames
(`python -m helpers.generate`) and the train-on-synthetic experiment (notebook 09).
Imports everything below it (core ... evaluate)."""
