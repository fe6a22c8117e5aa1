"""A zoo of small real architectures in plain PyTorch, for the ONNX bridge's tests and benchmarks.

Each model is the architecture a popular model library ships, scaled down so that export with
gradient graphs and verification take seconds on one CPU core: the operators, the block
structure and the normalisations are the real ones, the widths and depths are not.

=================  ============  ==============================================================
name               input         what it exercises
=================  ============  ==============================================================
``resnet``         (3, 32, 32)   basic blocks, batch norm, max-pool, projection shortcut
``mobilenetv3``    (3, 32, 32)   depthwise-separable convs, squeeze-excite, hard-swish
``efficientnet``   (3, 32, 32)   MBConv (expand, depthwise, SE), SiLU, residuals
``convnext``       (3, 32, 32)   patchify stem, 7x7 depthwise, LayerNorm, GELU, layer scale
``vit``            (3, 32, 32)   patch embedding, class token, SDPA attention, LayerNorm, GELU
``lstm``           (16, 8)       a 2-layer LSTM sequence classifier (last hidden state)
``gru``            (16, 8)       a 2-layer GRU sequence classifier (last hidden state)
=================  ============  ==============================================================

Every model maps ``(N, *input)`` to ``(N, 10)`` logits. :func:`create` builds one with seeded
weights (and, for batch-norm models, non-trivial running statistics) in eval mode::

    from neuroplex.testing.zoo import ZOO, create
    model, x = create("resnet", batch=4)

Importing this module imports torch (``neuroplex.testing`` itself does not import it).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ZOO", "ZooEntry", "create"]

NUM_CLASSES = 10


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, ReLU, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """(N, 3, 32, 32) -> (N, 10): conv-BN-ReLU stem, 3x3/2 max-pool, three stages of basic
    blocks (16, 32, 64 channels), global average pool, linear head."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(cin, width, 1 if i == 0 else 2))
            cin = width
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.layers(self.stem(x))
        out: torch.Tensor = self.head(features.mean(dim=(2, 3)))
        return out


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, reduce, activation, expand, gate."""

    def __init__(self, channels: int, reduced: int, gate: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))
        return x * self.gate(self.expand(scale))


class InvertedResidual(nn.Module):
    """MobileNetV3 / EfficientNet MBConv: 1x1 expand, kxk depthwise, optional SE, 1x1 project,
    residual when the shape is kept. ``act`` is hard-swish (MobileNetV3) or SiLU (EfficientNet)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        expand: int,
        kernel: int,
        stride: int,
        act: type[nn.Module],
        se_gate: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            act(),
        ]
        if se_gate is not None:
            layers.append(SqueezeExcite(hidden, max(4, cin // 4), se_gate))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)
        return out + x if self.residual else out


class MobileNetV3(nn.Module):
    """(N, 3, 32, 32) -> (N, 10): MobileNetV3-Small-style stem, inverted residuals with
    depthwise convs, squeeze-excite (hard-sigmoid gate) and hard-swish, pooled head."""

    def __init__(self) -> None:
        super().__init__()
        hs, relu, gate = nn.Hardswish, nn.ReLU, F.hardsigmoid
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, expand=1, kernel=3, stride=2, act=relu, se_gate=gate),
            InvertedResidual(16, 24, expand=4, kernel=3, stride=2, act=relu, se_gate=None),
            InvertedResidual(24, 24, expand=3, kernel=3, stride=1, act=relu, se_gate=None),
            InvertedResidual(24, 40, expand=4, kernel=5, stride=1, act=hs, se_gate=gate),
            InvertedResidual(40, 40, expand=3, kernel=5, stride=1, act=hs, se_gate=gate),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Conv2d(40, 96, 1, bias=False), nn.BatchNorm2d(96), nn.Hardswish()
        )
        self.classifier = nn.Sequential(nn.Linear(96, 128), nn.Hardswish(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.blocks(self.stem(x)))
        out: torch.Tensor = self.classifier(features.mean(dim=(2, 3)))
        return out


class EfficientNet(nn.Module):
    """(N, 3, 32, 32) -> (N, 10): EfficientNet-B0-style stem and MBConv stages (expansion 1
    and 6, 3x3 and 5x5 depthwise, SE with a sigmoid gate, SiLU), 1x1 head, pooled linear."""

    def __init__(self) -> None:
        super().__init__()
        silu = nn.SiLU
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), silu())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, expand=1, kernel=3, stride=1, act=silu, se_gate=torch.sigmoid),
            InvertedResidual(16, 24, expand=6, kernel=3, stride=2, act=silu, se_gate=torch.sigmoid),
            InvertedResidual(24, 24, expand=6, kernel=3, stride=1, act=silu, se_gate=torch.sigmoid),
            InvertedResidual(24, 40, expand=6, kernel=5, stride=2, act=silu, se_gate=torch.sigmoid),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Conv2d(40, 128, 1, bias=False), nn.BatchNorm2d(128), silu())
        self.classifier = nn.Linear(128, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.blocks(self.stem(x)))
        out: torch.Tensor = self.classifier(features.mean(dim=(2, 3)))
        return out


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm over channels (channels last), 4x pointwise MLP with GELU,
    layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-1) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dwconv(x).permute(0, 2, 3, 1)
        out = self.pwconv2(self.act(self.pwconv1(self.norm(out))))
        return x + (self.gamma * out).permute(0, 3, 1, 2)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of an ``(N, C, H, W)`` tensor (ConvNeXt's downsampling)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out


class ConvNeXt(nn.Module):
    """(N, 3, 32, 32) -> (N, 10): 4x4/4 patchify stem + LayerNorm, two stages (32, 64
    channels) of ConvNeXt blocks with a LayerNorm + 2x2/2 conv downsampling between them,
    pooled LayerNorm head."""

    def __init__(self, dims: tuple[int, int] = (32, 64), depths: tuple[int, int] = (1, 1)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), ChannelsFirstLayerNorm(dims[0]))
        self.stage1 = nn.Sequential(*[ConvNeXtBlock(dims[0]) for _ in range(depths[0])])
        self.down = nn.Sequential(
            ChannelsFirstLayerNorm(dims[0]), nn.Conv2d(dims[0], dims[1], 2, 2)
        )
        self.stage2 = nn.Sequential(*[ConvNeXtBlock(dims[1]) for _ in range(depths[1])])
        self.norm = nn.LayerNorm(dims[1], eps=1e-6)
        self.head = nn.Linear(dims[1], NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stage2(self.down(self.stage1(self.stem(x))))
        out: torch.Tensor = self.head(self.norm(features.mean(dim=(2, 3))))
        return out


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection and ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, d = x.shape
        qkv = self.qkv(x).reshape(n, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        projected: torch.Tensor = self.proj(out.transpose(1, 2).reshape(n, s, d))
        return projected


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: LayerNorm, attention, residual; LayerNorm, GELU MLP, residual."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class ViT(nn.Module):
    """(N, 3, 32, 32) -> (N, 10): 4x4 patch embedding (64 tokens), class token, learned
    position embedding, two pre-norm encoder blocks (dim 48, 3 heads, MLP 96), class-token head."""

    def __init__(self, dim: int = 48, depth: int = 2, heads: int = 3, patch: int = 4) -> None:
        super().__init__()
        tokens = (32 // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, 2 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat([cls, patches], dim=1) + self.pos_embed
        out: torch.Tensor = self.head(self.norm(self.blocks(tokens))[:, 0])
        return out


class RecurrentClassifier(nn.Module):
    """(N, 16, 8) sequences -> (N, 10): a 2-layer LSTM or GRU (hidden 32, batch first), linear
    head on the last time step."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(8, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        logits: torch.Tensor = self.head(out[:, -1])
        return logits


@attrs.frozen
class ZooEntry:
    """One architecture: its constructor and the shape of one input sample."""

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    summary: str


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("resnet", ResNet, (3, 32, 32), "ResNet, basic blocks, BN, max-pool"),
        ZooEntry("mobilenetv3", MobileNetV3, (3, 32, 32), "depthwise, SE, hard-swish"),
        ZooEntry("efficientnet", EfficientNet, (3, 32, 32), "MBConv, SE, SiLU"),
        ZooEntry("convnext", ConvNeXt, (3, 32, 32), "7x7 depthwise, LayerNorm, GELU"),
        ZooEntry("vit", ViT, (3, 32, 32), "patches, class token, SDPA, LayerNorm, GELU"),
        ZooEntry("lstm", lambda: RecurrentClassifier("lstm"), (16, 8), "2-layer LSTM"),
        ZooEntry("gru", lambda: RecurrentClassifier("gru"), (16, 8), "2-layer GRU"),
    )
}


def _settle_batch_norm(model: nn.Module, shape: tuple[int, ...], seed: int) -> None:
    """Give batch-norm layers running statistics of real activations (not 0/1)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand((16, *shape), generator=gen))


def create(name: str, *, batch: int = 4, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """Model ``name`` of :data:`ZOO` in eval mode with seeded weights, and a seeded batch
    ``(batch, *input_shape)`` of inputs in ``[0, 1)``.

    Raises:
        KeyError: an unknown name (the message lists the zoo).
    """
    if name not in ZOO:
        raise KeyError(f"no zoo model {name!r}; the zoo has {', '.join(ZOO)}")
    entry = ZOO[name]
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left alone
        torch.manual_seed(seed)
        model = entry.factory()
    _settle_batch_norm(model, entry.input_shape, seed)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    return model, torch.rand((batch, *entry.input_shape), generator=gen)
