"""A fitted latent prior: sample z from a Gaussian fitted to a model's training latents.

A VAE samples z ~ N(0, I), the prior its KL term pulls the encoder towards. With a weak KL term
(beta < 1, as the sharper EndoVAE of notebook 10) the training images' latents fill only part of
N(0, I), and prior samples land where the decoder has seen no image. Ex-post density estimation
(Ghosh et al., ICLR 2020) fits a density to the latents after training instead; here one Gaussian
with the moments of the aggregate posterior q(z) = mean over x of N(mu_x, sigma_x^2): mean of the
mu, covariance of the mu plus the mean sigma^2. z = mean + L @ (temperature * eps), L L^T = cov.

The prior is a small JSON file beside its checkpoint (`save`/`load`), tied to that checkpoint's
SHA-256, so `python -m helpers.generate --prior FILE` reproduces the frames.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.core.atomic import atomic_write_text
from helpers.core.fingerprint import json_digest
from helpers.model.endovae import EndoVAE
from helpers.train.fit import data_fingerprint
from helpers.train.infer import fast_model, images_to_tensor, model_device

PRIOR_FORMAT = "endovae-latent-prior-1"
JITTER = 1e-6  # added to the covariance's diagonal so that its Cholesky factor exists


@dataclass(frozen=True)
class LatentPrior:
    """N(mean, chol chol^T) over the latent space of one checkpoint."""

    mean: tuple[float, ...]
    chol: tuple[tuple[float, ...], ...]
    checkpoint_sha256: str = ""
    images: int = 0
    images_digest: str = ""  # helpers.train.fit.data_fingerprint of the fitted frames

    def __post_init__(self) -> None:
        """Check that chol is a finite lower-triangular d x d matrix for a d-dim mean."""
        d, chol = len(self.mean), np.asarray(self.chol, dtype=float)
        if d < 1 or chol.shape != (d, d):
            raise ValueError(f"latent prior: mean of {d} values needs a {d} x {d} chol, "
                             f"got shape {chol.shape}")  # fmt: skip
        if not (np.isfinite(chol).all() and np.isfinite(self.mean).all()):
            raise ValueError("latent prior: mean and chol must be finite")
        if np.triu(chol, 1).any() or (np.diag(chol) <= 0).any():
            raise ValueError("latent prior: chol must be lower-triangular with a positive diagonal")

    @property
    def latent_dim(self) -> int:
        """Size of z."""
        return len(self.mean)

    def transform(self, eps: torch.Tensor) -> torch.Tensor:
        """z = mean + chol @ eps for each row of eps (N x d, float)."""
        mean = torch.tensor(self.mean, dtype=torch.float64)
        chol = torch.tensor(self.chol, dtype=torch.float64)
        return (mean + eps.double() @ chol.T).float()

    def covariance(self) -> np.ndarray:
        """chol chol^T."""
        chol = np.asarray(self.chol)
        return chol @ chol.T

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what `save` writes)."""
        return {"format": PRIOR_FORMAT, "latent_dim": self.latent_dim, "mean": list(self.mean),
                "chol": [list(r) for r in self.chol], "checkpoint_sha256": self.checkpoint_sha256,
                "images": self.images, "images_digest": self.images_digest}  # fmt: skip

    def digest(self) -> str:
        """A short content hash (generation stamps record it)."""
        return json_digest(self.to_dict())[:16]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the prior as JSON (atomically); return the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path


def load(path: str | os.PathLike) -> LatentPrior:
    """A prior written by `LatentPrior.save`; a one-line error names a bad file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != PRIOR_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {PRIOR_FORMAT!r}")
        return LatentPrior(
            tuple(float(v) for v in data["mean"]),
            tuple(tuple(float(v) for v in row) for row in data["chol"]),
            str(data.get("checkpoint_sha256", "")),
            int(data.get("images", 0)),
            str(data.get("images_digest", "")),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a latent prior file ({exc})") from None


@torch.inference_mode()
def fit_latent_prior(
    model: EndoVAE, images: Any, checkpoint_sha256: str = "", batch_size: int = 128
) -> LatentPrior:
    """The Gaussian with the moments of the aggregate posterior of uint8 N x H x W x 3 images."""
    x = images_to_tensor(images, model.config.in_channels, model.config.in_size)
    if len(x) < 2:
        raise ValueError(f"images: {len(x)} frame(s); a fitted prior needs at least 2")
    dev = model_device(model)
    model, layout = fast_model(model, dev)
    mus, variances = [], []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].to(dev).float().div_(255.0)
        mu, logvar = model.encode(batch.contiguous(memory_format=layout))
        mus.append(mu.double().cpu())
        variances.append(logvar.double().exp().cpu())
    mu, var = torch.cat(mus), torch.cat(variances)
    cov = torch.cov(mu.T).reshape(mu.shape[1], mu.shape[1]) + torch.diag(var.mean(0))
    chol = torch.linalg.cholesky(cov + JITTER * torch.eye(len(cov), dtype=cov.dtype))
    if not math.isfinite(float(chol.sum())):
        raise ValueError("latent prior: the training latents are not finite")
    return LatentPrior(
        tuple(mu.mean(0).tolist()),
        tuple(tuple(row) for row in torch.tril(chol).tolist()),
        checkpoint_sha256,
        len(x),
        images_digest(x),
    )


def images_digest(images: Any) -> str:
    """Digest of uint8 frames (N x H x W x 3 array or its NCHW tensor view): fit's fingerprint."""
    return data_fingerprint(images_to_tensor(images))
