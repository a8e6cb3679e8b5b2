"""The input-complexity code length (JBIG-style adaptive context model) and corrected score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.inference import complexity


def test_known_code_lengths_of_tiny_planes():
    # One pixel: a fresh context codes it with probability 1/2 → 1 bit.
    assert complexity.code_length_bits(np.zeros((1, 1, 1), bool)) == pytest.approx([1.0])
    # Two zeros in a row share the all-zero context: 1 bit, then -log2(1.5 / 2).
    two = complexity.code_length_bits(np.zeros((1, 1, 2), bool))
    assert two == pytest.approx([1.0 - math.log2(0.75)])
    # A one where a zero was seen in the same context costs -log2(0.5 / 2) = 2 bits.
    one_after_zero = complexity.code_length_bits(np.array([[[0, 1]]], bool))
    assert one_after_zero == pytest.approx([3.0])


def test_structure_is_cheap_and_noise_costs_a_bit_a_pixel():
    rng = np.random.default_rng(0)
    blank = np.zeros((1, 28, 28), bool)
    stroke = blank.copy()
    stroke[0, 4:24, 13:15] = True  # a "1"
    ring = blank.copy()
    yy, xx = np.mgrid[:28, :28]
    ring[0] = np.abs(np.hypot(yy - 14, xx - 14) - 8) < 1.5  # an "0"
    noise = rng.random((1, 28, 28)) < 0.5
    bits = complexity.code_length_bits(np.concatenate([blank, stroke, ring, noise]))
    assert bits[0] < 30 and bits[0] < bits[1] < bits[2] < bits[3]
    assert 0.95 * 784 < bits[3] < 1.1 * 784  # incompressible: about one bit a pixel
    # Each plane is coded on its own: a batch gives what one plane alone gives.
    assert complexity.code_length_bits(ring) == pytest.approx(bits[2:3])


def test_planes_from_samples_of_any_layout():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, -1)
    assert complexity.as_planes(x, (3, 4, 5)).shape == (2, 12, 5)  # channels stacked
    assert complexity.as_planes(x[:, :20], (20,)).shape == (2, 1, 20)  # one row


def test_corrected_score_is_model_bits_minus_complexity_bits():
    nats = np.array([math.log(2) * 100, math.log(2) * 50])
    assert complexity.corrected_score(nats, np.array([30.0, 10.0])) == pytest.approx([70, 40])
