"""Evaluation: PSNR/SSIM tables, the plateau check, notebook 05/06 protocols, the classifier,
sample-quality distances (FD/KID/precision-recall), Figure 2 and the architecture tables.
Imports everything below it (core ... train)."""
