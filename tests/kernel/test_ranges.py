"""Input ranges: one (min, max), or one per channel (axis 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroplex.errors import ConfigError
from neuroplex.ranges import (
    check_input_range,
    clip,
    describe_range,
    parse_range_arg,
    range_bounds,
    range_envelope,
)


def test_accepted_forms_have_one_canonical_value() -> None:
    assert check_input_range((0, 255)) == (0.0, 255.0)
    per_channel = ((0.0, -1.0, 0.2), (1.0, 1.0, 0.5))
    for value in (
        ([0, -1, 0.2], [1, 1, 0.5]),
        (np.array([0, -1, 0.2]), np.array([1, 1, 0.5])),
        (torch.tensor([0, -1, 0.2], dtype=torch.float64), (1, 1, 0.5)),
    ):
        assert check_input_range(value) == per_channel
    # a number on one side is used for every channel
    assert check_input_range((0, [1, 2])) == ((0.0, 0.0), (1.0, 2.0))
    assert check_input_range(per_channel, channels=3) == per_channel
    assert range_envelope(per_channel) == (-1.0, 1.0)
    assert describe_range(per_channel) == "per channel min (0, -1, 0.2) max (1, 1, 0.5)"


@pytest.mark.parametrize(
    ("value", "channels", "match"),
    [
        (((0, 0), (1, 1, 1)), None, "2 per-channel minima but 3 maxima"),
        (((0, 2), (1, 1)), None, r"min < max in every channel, got \(2, 1\) in channel 1"),
        (((0, 0, 0), (1, 1, float("inf"))), None, "channel 2"),
        (((0, 0, 0), (1, 1, 1)), 1, "3 per-channel values, but the input has 1 channel on axis 1"),
        (((0, "a"), (1, 1)), None, "two per-channel sequences"),
        ((0, 1, 2), None, "two numbers"),
        (((), ()), None, "two numbers"),
    ],
)
def test_bad_ranges_get_one_clear_error(value: object, channels: int | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        check_input_range(value, channels=channels)
    assert info.value.path == "input_range" and "\n" not in str(info.value)


def test_bounds_and_clip_per_channel() -> None:
    value = check_input_range(((0.0, -1.0, 0.2), (1.0, 1.0, 0.5)))
    x = torch.linspace(-3, 3, 2 * 4 * 4).view(2, 1, 4, 4).expand(2, 3, 4, 4)
    lo, hi = range_bounds(value, x)
    assert isinstance(lo, torch.Tensor) and lo.shape == (1, 3, 4, 4)
    clipped = clip(x, lo, hi)
    for c, (a, b) in enumerate(zip(*value, strict=True)):
        assert float(clipped[:, c].min()) == pytest.approx(a)
        assert float(clipped[:, c].max()) == pytest.approx(b)
    with pytest.raises(ConfigError, match=r"the input has 1 channel on axis 1 \(shape"):
        range_bounds(value, torch.zeros(2, 1, 4, 4))
    # one (min, max): plain numbers, and clip is torch.clamp
    assert range_bounds((0.0, 1.0), x) == (0.0, 1.0)
    assert torch.equal(clip(x, 0.0, 1.0), x.clamp(0.0, 1.0))


def test_cli_sides() -> None:
    assert parse_range_arg("255") == 255.0
    assert parse_range_arg("0.1,0.2, 0.3") == (0.1, 0.2, 0.3)
    with pytest.raises(ConfigError, match="comma-separated numbers per channel, got '0;1'"):
        parse_range_arg("0;1")
