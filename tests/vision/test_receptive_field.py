"""Receptive field: formula (top-down = closed form), module walk, gradient measurement, ERF."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from deepnotes.vision import (
    effective_receptive_field,
    measure_receptive_field,
    module_rf_table,
    receptive_field,
    receptive_field_closed_form,
    receptive_field_topdown,
    rf_table,
)
from deepnotes.vision.networks import NETWORKS, alexnet, vgg16
from deepnotes.vision.receptive_field import gaussian_fit_r2, mass_radius


def _random_chain(rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    return [(rng.randint(1, 7), rng.randint(1, 3), rng.randint(1, 3)) for _ in range(n)]


def test_topdown_recursion_equals_closed_form(seed):
    rng = random.Random(seed)
    for _ in range(200):
        layers = _random_chain(rng, rng.randint(1, 12))
        assert receptive_field_topdown(layers) == receptive_field_closed_form(layers)
        two = [(k, s) for k, s, d in layers]
        assert receptive_field(two) == receptive_field_closed_form([(k, s, 1) for k, s in two])


def test_published_values_from_tuples():
    vgg = []
    for n in (2, 2, 3, 3, 3):
        vgg += [(3, 1)] * n + [(2, 2)]
    assert receptive_field(vgg) == 212  # pool5
    assert receptive_field(vgg[:-1]) == 196  # conv5_3
    alex = [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]
    assert receptive_field(alex) == 195
    assert receptive_field([(3, 1, 2)] * 3) == 13  # dilation: k_eff = 5


def test_published_values_from_modules():
    rows, _ = module_rf_table(vgg16(width=1 / 16), (224, 224))
    by_name = {r.name.split(".")[-1]: r for r in rows}
    assert by_name["conv5_3"].rf == 196 and by_name["pool5"].rf == 212
    assert by_name["pool5"].jump == 32 and by_name["pool5"].size == 7
    assert receptive_field(vgg16(width=1 / 16), (224, 224)) == 212
    rows, _ = module_rf_table(alexnet(width=1 / 16), 224)
    assert rows[-1].name == "features.pool5" and rows[-1].rf == 195 and rows[-1].size == 6
    for name, (build, expected, _) in NETWORKS.items():
        assert receptive_field(build(width=1 / 16), 224) == expected, name


def test_module_walk_matches_tuple_table(seed):
    rng = random.Random(seed)
    layers, mods, pads = _random_chain(rng, 6), [], []
    for i, (k, s, d) in enumerate(layers):
        p = rng.randint(0, (d * (k - 1)) // 2)
        pads.append(p)
        if i % 3 == 2 and d == 1:
            mods.append(nn.MaxPool2d(k, s, padding=min(p, k // 2)))
            pads[-1] = min(p, k // 2)
        else:
            mods += [nn.Conv2d(2, 2, k, s, p, dilation=d), nn.ReLU()]
    n = receptive_field(layers) + 3 * math.prod(s for _, s, _ in layers)  # every map >= 1 unit
    expected = rf_table(layers, pads, input_size=n)
    rows_h, rows_w = module_rf_table(nn.Sequential(*mods), (n, n + 1))
    for e, h in zip(expected, rows_h, strict=True):
        assert (h.rf, h.jump, h.start, h.size) == (e.rf, e.jump, e.start, e.size)
    assert [r.rf for r in rows_w] == [r.rf for r in rows_h]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_gradient_measurement_equals_formula(name):
    build, expected, _ = NETWORKS[name]
    net = build(width=1 / 32)
    (rf_h, rf_w), ((lo, hi), _) = measure_receptive_field(net)
    assert rf_h == rf_w == expected == receptive_field(net, 224) == hi - lo + 1


def test_gradient_measurement_random_chains(seed):
    """Random kernels, strides, dilations, paddings and pools; non-square kernels too. The
    measured pixel bounds must equal the theoretical box [start + u j - (r-1)/2, ...]."""
    rng = random.Random(seed)
    for _ in range(3):
        mods, cin = [], 1
        for i in range(rng.randint(2, 6)):
            k = (rng.randint(1, 5), rng.randint(1, 5))
            s, d = rng.randint(1, 2), rng.randint(1, 2)
            if i % 2 and k[0] == k[1]:
                mods.append(nn.MaxPool2d(k, s))
            else:
                mods += [nn.Conv2d(cin, 3, k, s, padding=rng.randint(0, 2), dilation=d), nn.ReLU()]
                cin = 3
        net = nn.Sequential(*mods)
        rows = module_rf_table(net, (2048, 2048))
        (rf_h, rf_w), bounds = measure_receptive_field(net)
        assert (rf_h, rf_w) == (rows[0][-1].rf, rows[1][-1].rf)
        for ax in range(2):
            length = bounds[ax][1] - bounds[ax][0] + 1
            assert length == rows[ax][-1].rf
        if rf_h != rf_w:
            assert receptive_field(net, (2048, 2048)) == (rf_h, rf_w)


def test_measured_box_is_where_the_formula_puts_it():
    net = nn.Sequential(nn.Conv2d(1, 2, 5, 2, padding=0), nn.ReLU(), nn.Conv2d(2, 2, 3, 3, 2))
    rows_h, _ = module_rf_table(net, (40, 40))
    (rf, _), ((lo, hi), _) = measure_receptive_field(net, (40, 40), in_channels=1)
    r = rows_h[-1]
    units = [u for u in range(r.size) if r.box(u) == (lo, hi)]
    assert rf == r.rf and len(units) == 1


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="kernel, stride"):
        receptive_field([(3,)])
    with pytest.raises(ValueError, match=">= 1"):
        receptive_field([(3, 0)])
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(vgg16(width=1 / 16))
    with pytest.raises(ValueError, match="too small"):
        module_rf_table(vgg16(width=1 / 16), (16, 16))
    with pytest.raises(ValueError, match="know how"):
        module_rf_table(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)), 16)
    with pytest.raises(ValueError, match="B, C, H, W"):
        effective_receptive_field(nn.Identity(), torch.randn(3, 8, 8))


def test_erf_is_gaussian_like_and_smaller_than_the_theoretical_field():
    """Luo et al. 2016: a deep stack of 3x3 convs with random weights (here uniform positive
    weights, the paper's first case) has an ERF close to a Gaussian whose width grows as
    sqrt(depth), well inside the theoretical field 2 n + 1."""
    n = 16
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n)]).double()
    with torch.no_grad():
        for conv in net:
            conv.weight.fill_(1.0 / 9)
    erf = effective_receptive_field(net, torch.ones(1, 1, 65, 65, dtype=torch.float64))
    support = torch.nonzero(erf.sum(0) > 0).flatten()
    assert int(support.max() - support.min()) + 1 == receptive_field([(3, 1)] * n) == 33
    sigma, r2 = gaussian_fit_r2(erf.sum(0))
    assert r2 > 0.99
    # the sum of n uniform {-1,0,1} steps has variance 2n/3
    assert abs(sigma**2 - 2 * n / 3) < 1e-6
    assert mass_radius(erf, 0.95) < 0.5 * (33 - 1) / 2


def test_mass_radius_of_a_uniform_square():
    erf = torch.zeros(21, 21)
    erf[5:16, 5:16] = 1.0  # 11 x 11 square centred at 10: half-width 5
    assert abs(mass_radius(erf, 1.0) - 5.0) < 1e-9
    assert mass_radius(erf, 0.5) < 5.0
    with pytest.raises(ValueError):
        mass_radius(erf, 0.0)


def test_strip_measurement_equals_square_image():
    """The cheap strip (one valid path across) gives the extent a full square image gives."""
    net = nn.Sequential(
        nn.Conv2d(3, 4, 5, 2, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, 2, 3),
    )  # fmt: skip
    strip, _ = measure_receptive_field(net)
    square, _ = measure_receptive_field(net, (71, 71))
    assert strip == square == (receptive_field(net, 71),) * 2
