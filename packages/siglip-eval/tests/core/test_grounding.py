"""Dense linear probe (pixel accuracy, mIoU) and referring-expression accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from siglip_eval.grounding import dense_linear_probe
from siglip_eval.grounding import patch_labels
from siglip_eval.grounding import referring_expression_accuracy
from siglip_eval.grounding import segmentation_metrics


@given(seed=st.integers(0, 2**16), classes=st.integers(2, 6))
def test_segmentation_metrics_equal_a_per_pixel_loop(seed: int, classes: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, (3, 5, 4))
    predicted = rng.integers(0, classes, (3, 5, 4))
    accuracy, miou, iou = segmentation_metrics(predicted, truth, num_classes=classes)
    assert accuracy == pytest.approx(np.mean(predicted == truth))
    expected = []
    for label in range(classes):
        union = np.sum((predicted == label) | (truth == label))
        if union:
            expected.append(np.sum((predicted == label) & (truth == label)) / union)
            assert iou[label] == pytest.approx(expected[-1])
        else:
            assert np.isnan(iou[label])
    assert miou == pytest.approx(np.mean(expected))


def test_patch_labels_take_each_patch_majority() -> None:
    maps = np.zeros((1, 4, 4), dtype=np.int64)
    maps[0, 0, 0:3] = 2  # 2 of the first patch's 4 pixels, the rest 0: tie -> smallest (0)
    maps[0, 2:, 2:] = 1
    maps[0, 2, 0] = 3
    assert patch_labels(maps, 2).tolist() == [[0, 0, 0, 1]]
    with pytest.raises(ValueError, match="3x3 grid"):
        patch_labels(maps, 3)


def test_dense_probe_separates_informative_patches_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, (60, 4, 4)).repeat(4, axis=1).repeat(4, axis=2)  # 16x16, grid 4
    labels = patch_labels(maps, 4)
    informative = np.eye(3)[labels] * 2 + rng.normal(0, 0.3, (60, 16, 3))
    noise = rng.normal(0, 1, (60, 16, 3))
    good = dense_linear_probe(
        informative[:40], maps[:40], informative[40:], maps[40:], num_classes=3
    )
    bad = dense_linear_probe(noise[:40], maps[:40], noise[40:], maps[40:], num_classes=3)
    assert good.pixel_accuracy > 0.95
    assert good.mean_iou > 0.9
    assert bad.pixel_accuracy < 0.6
    assert good.predictions.shape == (20, 16, 16)


def test_referring_expression_accuracy_counts_iou_at_least_a_half() -> None:
    truth = [[0, 0, 10, 10]] * 4
    predicted = [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 21], None]  # IoU 1, 0.5, <0.5, miss
    assert referring_expression_accuracy(predicted, truth) == 0.5
    with pytest.raises(ValueError, match="as many predicted as true"):
        referring_expression_accuracy(predicted[:2], truth)
