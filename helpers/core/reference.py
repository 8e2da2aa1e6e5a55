"""The original report's and the paper's numbers, in one place.

The original report trained on Kvasir (1,500 healthy frames x 4 flips) for 3,000 epochs with
batches of 128 on a GPU; the paper (Diamantis, Gatoula and Iakovidis, IEEE IVMSP 2022) trained
for 5,000. Every comparison in the notebooks and the report reads these values.
"""

from __future__ import annotations

ORIGINAL_EPOCHS = 3000  # the original report's training epochs
PAPER_EPOCHS = 5000  # the paper's
ORIGINAL_BATCH = 128  # images per batch (losses are sums over a batch)
ORIGINAL_LR = 1e-3  # Adam learning rate
ORIGINAL_LATENT_DIM = 6
ORIGINAL_TRAIN_IMAGES = 6000  # 1,500 healthy frames x 4 flips
PAPER_BUDGET = ORIGINAL_EPOCHS * ORIGINAL_TRAIN_IMAGES  # training images seen per model

# Final and epoch-50 losses per batch of 128 (Figures 3 and 4 of the original report).
ORIGINAL_LOSSES = {
    "mse": {"epoch 50": {"recon": 25050, "kld": 2477}, "final": {"recon": 6830, "kld": 2777}},
    "bce": {"epoch 50": {"recon": 1944474, "kld": 2990}, "final": {"recon": 1896299, "kld": 3307}},
}

# Tables 1 and 2: PSNR (dB) and SSIM of 50 random polyp reconstructions, (mean, std);
# the report does not state its std convention.
ORIGINAL_METRICS = {
    "mse": {"PSNR": (16.952047, 2.294434), "SSIM": (0.470127, 0.084576)},
    "bce": {"PSNR": (16.584135, 2.276679), "SSIM": (0.447347, 0.093633)},
}

# Table 3: real-vs-reconstructed classifier (200 + 200 training, 100 + 100 test images,
# frozen ImageNet backbone).
ORIGINAL_TABLE3 = {"Accuracy": {"MSE": 0.995, "BCE": 1.0}, "AUC": {"MSE": 1.0, "BCE": 1.0}}

# The paper's train-on-synthetic experiment on KID: polyp-vs-healthy ROC AUC (mean, std).
PAPER_SYNTHETIC_AUC = {"real only": (0.909, 0.008), "synthetic only": (0.819, 0.009)}

# Trainable parameters of the paper's network (Fig. 1), which ours must match exactly.
PAPER_PARAMETER_COUNTS = {"encoder": 9_842_380, "decoder": 1_282_467}
