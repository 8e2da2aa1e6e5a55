"""Data: the embedded Kvasir-like frames, Kvasir download/extract/find, image transforms,
preprocessing (flips x centre crops x 96x96) and the processed set with its splits.
Imports helpers.core, helpers.model and helpers.config."""
