"""The DiCE unit and DiCENet (Mehta et al., "DiCENet: Dimension-wise Convolutions for
Efficient Networks", arXiv 1906.03516, TPAMI 2022), read from the authors' released
code, sacmehta/EdgeNets: ``nn_layers/dice.py`` (``DICE``, ``StridedDICE``),
``nn_layers/cnn_utils.py`` (``CBR``, ``BR``, ``Shuffle``),
``model/classification/dicenet.py`` (``ShuffleDICEBlock``, ``CNNModel``) and
``model/classification/dicenet_config.py`` (the widths).

**The DiCE unit** (``dice``; the authors' ``DICE(C, C_out, H, W)``) on an (N, C, H, W)
input, in the IR (no op of its own; ``prelu`` and ``transpose`` are IR ops):

* dimension-wise convolutions, three k x k "depthwise" convs (k = 3, padding
  (k - 1) / 2, no bias), each with one filter per slice of one dimension:
  ``conv_channel`` over the channels (groups = C: the usual depthwise conv);
  ``conv_height`` on the input transposed to (N, H, C, W) (groups = H: slice h is
  filtered over its C x W plane) and transposed back; ``conv_width`` on (N, W, H, C)
  (groups = W, over each H x C plane) and back. The transposes are the authors'
  ``transpose(1, 2)`` and ``transpose(1, 3)``; in the IR ``transpose`` (0, 2, 1, 3) and
  (0, 3, 2, 1), each its own inverse;
* the three concatenated (3C channels: channel-wise, height-wise, width-wise), BN +
  PReLU (3C slopes; the authors' ``BR``), and a channel shuffle in 3 groups (their
  ``vol_shuffle``, on by default: ``shuffle``), which puts each channel's three
  dimension-wise responses side by side;
* dimension-wise fusion. Local fusion: a grouped 1x1 conv 3C -> C with C groups (each
  output channel fuses its own three responses) + BN + PReLU (their
  ``weight_avg_layer``). Global fusion, from that fused map: (a) channel encoding, a
  global average pool, 1x1 conv C -> C // 4 (no bias), ReLU, 1x1 conv C // 4 -> C_out
  (no bias), sigmoid (their ``linear_comb_layer``); (b) spatial encoding, a 3x3 conv
  C -> C_out with gcd(C, C_out) groups (depthwise when C_out = C) + BN + PReLU (their
  ``proj_layer``); the output is (b) * (a), broadcast over H and W.

The paper describes the fusion as local fusion (a group point-wise conv) and global
fusion (spatial and channel encoding, multiplied); convbench follows the released code
where the two could be read differently (the C // 4 bottleneck with ReLU in the
channel encoding, the 3x3 kernel of the spatial one, the shuffle before local fusion).

**DiCENet** (``dicenet``, width scale s as ``width``; channels per s are
:data:`DICENET_CHANNELS`, the authors' ``sc_ch_dict``; units per level ``rep_layers``
= 3, 7, 3): level1 CBR 3x3 s2 (conv without bias, BN, PReLU), level2 maxpool 3x3 s2
pad 1; levels 3, 4, 5 each a strided DiCE block, then 3, 7 and 3 shuffle DiCE blocks;
global average pool; classifier 1x1 conv C5 -> C6 with 4 groups (no bias; their
"grouped linear transformation"), 1x1 conv C6 -> classes with bias, flatten.

* strided DiCE block (``StridedDICE``, C -> 2C, halves H and W): left, CBR
  depthwise 3x3 s2 then CBR 1x1; right, avgpool 3x3 s2 pad 1, a DiCE unit, CBR 1x1;
  concatenated, channel shuffle in 2 groups. PyTorch's ``nn.AvgPool2d`` there counts
  the zero padding in its average (``count_include_pad=True``, divisor 9); the IR's
  ``avgpool`` leaves padding out, so convbench writes it as ``pad`` (one zero on each
  side of H and W) and a 3x3 s2 ``avgpool`` without padding: the same function;
* shuffle DiCE block (``ShuffleDICEBlock``, C_in -> C_out): the first
  L = round(C_in / 2) channels pass (``slice``); the other C_in - L go through CBR 1x1
  to C_out - L channels and a DiCE unit; concatenated, channel shuffle in 2 groups.

Where convbench differs from the released code: (1) the authors' ``DICE`` is built for
a fixed (H, W) and resizes an input of another size (bilinear up, adaptive average pool
down) around its height- and width-wise convs; convbench builds each unit for the size
its input has, so no resizing ever happens, which is also what the released DiCENet
does at any resolution divisible by 32 (its units are built for the sizes their inputs
have); (2) dropout before the last conv is not part of the computation; (3) PReLU
slopes are drawn in [0, 0.5] rather than set to PyTorch's 0.25 (see
:mod:`convbench.graph`), BN as everywhere in convbench.

Published figures (:data:`CONFIGS`): parameters as osmr/imgclsmob's port of the
authors' model counts them (``pytorchcv/models/dicenet.py``, its ``_test``: 1,130,704
for s = 0.2 ... 3,979,044 for s = 2.0; they round to the 1.13 ... 3.98 M of the
results table in the authors' ``dicenet_config.py``), which convbench's counts equal;
multiply-adds as the authors' model zoo prints them
(``model/classification/model_zoo/README.md``, "FLOPs (in million)", 224 x 224), which
their ``utilities/utils.py`` ``compute_flops`` gets as the FLOPs of every ``nn.Conv2d``
(2 per multiply-add, plus one per output element of a conv with a bias) halved: the
multiply-adds of the convs, the classifier's two 1x1 convs included (convbench's
convention), plus 500 for the last conv's 1000 bias additions.

Verification (``convbench check`` by hand, batch 2, one thread; the unit as ``dice``
with channels 8, size 5, out_channels 12, the network as s = 0.2 at 64 x 64 with 10
classes): the unit verifies at the strict 1e-4 in torch (eager and compiled, native and
diagonalwise), tensorflow, jax and mxnet (eager and compiled), NCHW and NHWC,
inference and training (worst 1.8e-6), and in inference in onnxruntime, tvm, litert
(xnnpack, reference) and executorch (portable; xnnpack at 2 threads: at one thread
executorch's threadpool aborts, as it does here on a plain depthwise conv too). The
network verifies in inference in all of them (worst 1.0e-6, tvm). Its float32 training
gradients do not hold 1e-4 in torch: a squeeze weight's gradient, behind a sigmoid gate
and training-mode batch norms over 2 x 2 planes, is 1.2e-4 (NCHW) and 3.8e-2 (NHWC)
from the float64 reference, while torch in float64 agrees with it to 1.5e-12 in both
layouts (the lowering is exact; the float32 error is conditioning). darknet skips both
(no PReLU, no transpose).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.layers import _Params
from convbench.workloads.shuffle import channel_shuffle

Width = Literal["0.2", "0.5", "0.75", "1.0", "1.25", "1.5", "1.75", "2.0", "2.4"]

#: Channels per width scale s: level1, level2, levels 3, 4, 5, classifier's middle
#: (the authors' ``sc_ch_dict``, ``model/classification/dicenet_config.py``).
DICENET_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "0.2": (16, 16, 32, 64, 128, 1024),
    "0.5": (24, 24, 48, 96, 192, 1024),
    "0.75": (24, 24, 86, 172, 344, 1024),
    "1.0": (24, 24, 116, 232, 464, 1024),
    "1.25": (24, 24, 144, 288, 576, 1024),
    "1.5": (24, 24, 176, 352, 704, 1024),
    "1.75": (24, 24, 210, 420, 840, 1024),
    "2.0": (24, 24, 244, 488, 976, 1024),
    "2.4": (24, 24, 278, 556, 1112, 1280),
}
#: Shuffle DiCE blocks after the strided one in levels 3, 4, 5 (the authors' ``rep_layers``).
LEVEL_UNITS = (3, 7, 3)
#: Groups of the classifier's first 1x1 conv.
CLASSIFIER_GROUPS = 4


def _width_choice(value: Any) -> Any:
    """YAML reads ``width: 0.5`` as a number: take it as the choice "0.5" (1 as "1.0")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"{float(value):.2f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    return value


def cbr(
    b: GraphBuilder, x: str, out: int, kernel: int, name: str, stride: int = 1, groups: int = 1
) -> str:
    """The authors' ``CBR``: conv (no bias, padding (k - 1) / 2) + BN + PReLU."""
    y = b.conv2d(x, out, kernel, stride=stride, groups=groups, name=name)
    return b.prelu(b.batchnorm(y, name=f"{name}.bn"), name=f"{name}.prelu")


def dice_unit(
    b: GraphBuilder,
    x: str,
    out_channels: int | None = None,
    kernel: int = 3,
    shuffle: bool = True,
    name: str = "dice",
) -> str:
    """The DiCE unit on ``x`` (module docstring); returns its output, named ``name``."""
    n, c, h, w = b.shape(x)
    out = out_channels or c
    if c < 4:
        raise ValueError(f"{name}: a DiCE unit needs at least 4 channels (its squeeze has C // 4), got {c}")
    along_c = b.conv2d(x, c, kernel, groups=c, name=f"{name}.conv_channel")
    xh = b.transpose(x, (0, 2, 1, 3), name=f"{name}.to_height")  # (N, H, C, W)
    yh = b.conv2d(xh, h, kernel, groups=h, name=f"{name}.conv_height")
    along_h = b.transpose(yh, (0, 2, 1, 3), name=f"{name}.from_height")
    xw = b.transpose(x, (0, 3, 2, 1), name=f"{name}.to_width")  # (N, W, H, C)
    yw = b.conv2d(xw, w, kernel, groups=w, name=f"{name}.conv_width")
    along_w = b.transpose(yw, (0, 3, 2, 1), name=f"{name}.from_width")
    y = b.add("concat", [along_c, along_h, along_w], name=f"{name}.concat", axis=1)
    y = b.prelu(b.batchnorm(y, name=f"{name}.bn"), name=f"{name}.prelu")
    if shuffle:
        y = channel_shuffle(b, y, 3, name=f"{name}.shuffle")
    fused = cbr(b, y, c, 1, f"{name}.local_fusion", groups=c)
    pooled = b.add("global_avgpool", [fused], name=f"{name}.pool")
    squeezed = b.act(b.conv2d(pooled, c // 4, 1, name=f"{name}.squeeze"), "relu")
    gate = b.add("sigmoid", [b.conv2d(squeezed, out, 1, name=f"{name}.excite")], name=f"{name}.gate")
    spatial = cbr(b, fused, out, 3, f"{name}.proj", groups=math.gcd(c, out))
    return b.add("mul", [spatial, gate], name=name)


def strided_dice_block(b: GraphBuilder, x: str, name: str) -> str:
    """The authors' ``StridedDICE``: C -> 2C channels, H and W halved."""
    c = b.shape(x)[1]
    left = cbr(b, cbr(b, x, c, 3, f"{name}.left.dw", stride=2, groups=c), c, 1, f"{name}.left.pw")
    padded = b.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), name=f"{name}.right.pad")
    pooled = b.add(
        "avgpool", [padded], name=f"{name}.right.pool", kernel=(3, 3), stride=(2, 2), padding=(0, 0)
    )  # nn.AvgPool2d(3, padding=1, stride=2): zeros counted in the mean
    right = cbr(b, dice_unit(b, pooled, name=f"{name}.right.dice"), c, 1, f"{name}.right.pw")
    y = b.add("concat", [left, right], name=f"{name}.concat", axis=1)
    return channel_shuffle(b, y, 2, name=name)


def shuffle_dice_block(b: GraphBuilder, x: str, out_channels: int, name: str) -> str:
    """The authors' ``ShuffleDICEBlock``: half the channels pass, half go through CBR 1x1
    and a DiCE unit; concatenated and shuffled in 2 groups."""
    c = b.shape(x)[1]
    keep = round(0.5 * c)
    left = b.add("slice", [x], name=f"{name}.left", axis=1, start=0, stop=keep)
    right = b.add("slice", [x], name=f"{name}.right", axis=1, start=keep, stop=c)
    right = dice_unit(b, cbr(b, right, out_channels - keep, 1, f"{name}.pw"), name=f"{name}.dice")
    y = b.add("concat", [left, right], name=f"{name}.concat", axis=1)
    return channel_shuffle(b, y, 2, name=name)


class DiceParams(_Params):
    """One DiCE unit on a (channels, size, size) input."""

    channels: int = Field(ge=4, description="input channels (the squeeze has channels // 4)")
    size: int = Field(ge=1, description="input height and width")
    out_channels: int | None = Field(None, ge=1, description="output channels; none: channels")
    kernel: int = Field(3, ge=1, description="odd kernel of the three dimension-wise convs")
    shuffle: bool = True

    @model_validator(mode="after")
    def _odd(self) -> DiceParams:
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        return self


def build_dice(p: DiceParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([dice_unit(b, x, p.out_channels, p.kernel, p.shuffle, name="dice")])


class DiceNetParams(BaseModel):
    """Width scale s, input resolution (a multiple of 32), classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: Width = "1.0"
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)

    @field_validator("width", mode="before")
    @classmethod
    def _number_as_choice(cls, value: Any) -> Any:
        return _width_choice(value)

    @model_validator(mode="after")
    def _multiple_of_32(self) -> DiceNetParams:
        if self.resolution % 32:
            raise ValueError(f"resolution must be a multiple of 32 (five halvings), got {self.resolution}")
        return self


def build_dicenet(p: DiceNetParams, batch: int) -> Graph:
    channels = DICENET_CHANNELS[p.width]
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = cbr(b, x, channels[0], 3, "level1", stride=2)
    y = b.pool(y, "maxpool", 3, 2, 1)
    for level, (units, out) in enumerate(zip(LEVEL_UNITS, channels[2:5], strict=True), start=3):
        y = strided_dice_block(b, y, f"level{level}.0")
        for u in range(1, units + 1):
            y = shuffle_dice_block(b, y, out, f"level{level}.{u}")
    y = b.add("global_avgpool", [y], name="pool")
    y = b.conv2d(y, channels[5], 1, groups=CLASSIFIER_GROUPS, name="classifier.0")
    y = b.conv2d(y, p.classes, 1, bias=True, name="classifier.1")
    return b.build([b.add("flatten", [y], name="flatten")])


_SOURCE = (
    "Mehta et al. (arXiv 1906.03516): parameters from osmr/imgclsmob's port of the authors' model"
    " (the authors' dicenet_config.py table prints {m} M), multiply-adds the authors' EdgeNets model zoo"
    " README, FLOPs (in million), s = {s}, 224 x 224"
)
#: (s, parameters (osmr/imgclsmob), the authors' rounded parameters (M), model-zoo FLOPs (M))
_FIGURES = (
    ("0.2", 1_130_704, "1.13", "14.90"),
    ("0.5", 1_214_120, "1.21", "24.71"),
    ("0.75", 1_495_676, "1.50", "46.83"),
    ("1.0", 1_805_604, "1.81", "70.71"),
    ("1.25", 2_162_888, "2.16", "98.11"),
    ("1.5", 2_652_200, "2.65", "135.48"),
    ("1.75", 3_264_932, "3.26", "182.24"),
    ("2.0", 3_979_044, "3.98", "236.29"),
)
CONFIGS = tuple(
    NamedConfig(f"s={s}", {"width": s}, Published(_SOURCE.format(m=m, s=s), params=n, macs=f"{f} M"))
    for s, n, m, f in _FIGURES
)

#: The DiCE units of DiCENet s = 1.0 at 224 x 224, one per level (the shuffle blocks' units).
UNIT_CONFIGS = tuple(
    NamedConfig(name, {"channels": c, "size": s})
    for name, c, s in (
        ("DiCENet s=1.0 level3 (58x28)", 58, 28),
        ("DiCENet s=1.0 level4 (116x14)", 116, 14),
        ("DiCENet s=1.0 level5 (232x7)", 232, 7),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "dice",
        DiceParams,
        build_dice,
        "DiCE unit (Mehta et al.): depthwise convs along channels, height and width, then dimension-wise fusion",
        configs=UNIT_CONFIGS,
    )
)
register(
    WorkloadKind(
        "dicenet",
        DiceNetParams,
        build_dicenet,
        "DiCENet (width scale s, resolution): strided and shuffle DiCE blocks",
        "network",
        configs=CONFIGS,
    )
)
