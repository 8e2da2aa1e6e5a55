"""The science: the EndoVAE network of the paper (endovae.py), its losses (losses.py) and one
training step (step.py). Imports only helpers.core."""
