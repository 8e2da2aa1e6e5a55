"""Helpers for the EndoVAE report bundle (Diamantis et al., IVMSP 2022, reproduced on Kvasir).

Importing this package changes no global state; import the submodules you need.
"""

__version__ = "0.1.0"
