"""EndoVAE: the variational autoencoder of Diamantis, Gatoula & Iakovidis (IVMSP 2022, Fig. 1).

`EndoVAE()` with no arguments is the paper's network for 96x96 RGB images:

    encoder  3x3 convs 16/s1, 32/s1, 32/s2, 64/s2, 128/s1, 256/s2 (ReLU), flatten 256*12*12,
             dense 256 (ReLU), two dense heads of `latent_dim`=6: mu and log sigma^2
    decoder  dense 36,864 (ReLU) -> 256x12x12, TConv256/s2, Conv128, TConv64/s2, Conv64,
             TConv32/s2, Conv32 (ReLU), Conv3 -> logits (sigmoid gives the image)

"same" padding throughout. Parameter counts: encoder 9,842,380; decoder 1,282,467.
The decoder returns logits so that BCE can be computed stably; `decode` applies the sigmoid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EndoVAEConfig:
    """Shape of an EndoVAE; the defaults are the paper's."""

    latent_dim: int = 6
    in_size: int = 96
    in_channels: int = 3
    enc_channels: tuple[int, ...] = (16, 32, 32, 64, 128, 256)
    enc_strides: tuple[int, ...] = (1, 1, 2, 2, 1, 2)
    hidden_dim: int = 256
    dec_channels: tuple[int, ...] = (256, 128, 64, 64, 32, 32)
    dec_strides: tuple[int, ...] = (2, 1, 2, 1, 2, 1)
    norm: str = (
        "none"  # BatchNorm after the hidden convs of the "encoder" or of "both" (not the paper)
    )

    def __post_init__(self) -> None:
        """Validate the config and normalise lists to tuples."""
        for name in ("enc_channels", "enc_strides", "dec_channels", "dec_strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.enc_channels) != len(self.enc_strides):
            raise ValueError("enc_channels and enc_strides must have the same length")
        if len(self.dec_channels) != len(self.dec_strides):
            raise ValueError("dec_channels and dec_strides must have the same length")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: must be one of {', '.join(NORMS)}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim={self.latent_dim}: must be >= 1")
        down = _prod(self.enc_strides)
        if self.in_size % down or _prod(self.dec_strides) != down:
            raise ValueError(
                f"in_size={self.in_size} must be divisible by the stride product "
                f"{down}, and decoder strides must undo encoder strides"
            )

    @property
    def feature_size(self) -> int:
        """Side of the smallest feature map (12 for the paper)."""
        return self.in_size // _prod(self.enc_strides)

    def to_dict(self) -> dict:
        """Plain dict (lists, ints) for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


NORMS = ("none", "encoder", "both")
# How z is drawn for generation: N(0, I), the prior of the loss, or a Gaussian fitted to the
# training latents afterwards (helpers.train.prior).
PRIORS = ("standard", "fitted")


def _act(channels: int, batch_norm: bool) -> list[nn.Module]:
    """What follows a hidden conv: ReLU, after a BatchNorm when `batch_norm`."""
    return ([nn.BatchNorm2d(channels)] if batch_norm else []) + [nn.ReLU(inplace=True)]


def _prod(values: tuple[int, ...]) -> int:
    """Product of integers."""
    out = 1
    for v in values:
        out *= v
    return out


class Encoder(nn.Module):
    """Image -> (mu, logvar)."""

    def __init__(self, cfg: EndoVAEConfig):
        super().__init__()
        layers, c_in = [], cfg.in_channels
        for c_out, stride in zip(cfg.enc_channels, cfg.enc_strides, strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                *_act(c_out, cfg.norm != "none"),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        flat = c_in * cfg.feature_size**2
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, cfg.hidden_dim), nn.ReLU(inplace=True)
        )
        self.mu = nn.Linear(cfg.hidden_dim, cfg.latent_dim)
        self.logvar = nn.Linear(cfg.hidden_dim, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return mu and log sigma^2 of q(z|x)."""
        h = self.dense(self.features(x))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """Latent z -> image logits."""

    def __init__(self, cfg: EndoVAEConfig):
        super().__init__()
        self.c0, self.s0 = cfg.enc_channels[-1], cfg.feature_size
        self.dense = nn.Sequential(
            nn.Linear(cfg.latent_dim, self.c0 * self.s0**2), nn.ReLU(inplace=True)
        )
        layers, c_in = [], self.c0
        for c_out, stride in zip(cfg.dec_channels, cfg.dec_strides, strict=True):
            if stride == 1:
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            else:
                layers.append(
                    nn.ConvTranspose2d(
                        c_in, c_out, 3, stride=stride, padding=1, output_padding=stride - 1
                    )
                )
            layers += _act(c_out, cfg.norm == "both")
            c_in = c_out
        layers.append(nn.Conv2d(c_in, cfg.in_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return image logits (apply sigmoid for pixel values in [0, 1])."""
        h = self.dense(z).view(-1, self.c0, self.s0, self.s0)
        return self.net(h)


class EndoVAE(nn.Module):
    """The EndoVAE: encoder, reparameterisation, decoder."""

    def __init__(self, config: EndoVAEConfig | None = None):
        super().__init__()
        self.config = config or EndoVAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I) (differentiable in mu and logvar)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, logvar) for images x in [0, 1], shape N x 3 x H x W."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return images in [0, 1] for latents z."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (logits, mu, logvar); sigmoid(logits) is the reconstruction."""
        mu, logvar = self.encoder(x)
        return self.decoder(self.reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Reconstruct images: decode mu (deterministic) or a sampled z."""
        mu, logvar = self.encoder(x)
        return self.decode(self.reparameterize(mu, logvar) if sample else mu)


INIT_SCHEMES = ("pytorch", "he")
HE_LOGVAR_BIAS = -6.0  # log sigma^2 of q(z|x) at the start: sigma 0.05, so z carries the code


def init_weights(model: EndoVAE, scheme: str) -> EndoVAE:
    """Initialise in place: "pytorch" keeps PyTorch's defaults (the paper's code); "he" gives the
    decoder He-normal weights and zero biases (gain sqrt(2) for its ReLU layers, 1 for the output
    conv, so z's signal and the loss's gradient survive its seven layers both ways) and log sigma^2
    a bias of HE_LOGVAR_BIAS (a narrow posterior); the encoder keeps PyTorch's defaults (He there
    made mu overshoot)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init={scheme!r}: must be one of {', '.join(INIT_SCHEMES)}")
    if scheme == "pytorch":
        return model
    out = model.decoder.net[-1]
    for layer in model.decoder.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            mode = "fan_out" if isinstance(layer, nn.ConvTranspose2d) else "fan_in"
            gain = "linear" if layer is out else "relu"
            nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity=gain)
            nn.init.zeros_(layer.bias)
    nn.init.constant_(model.encoder.logvar.bias, HE_LOGVAR_BIAS)
    return model


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
