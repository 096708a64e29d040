"""What SigLIP 2's decoder and self-distillation claim to improve: dense features and localisation.

- Dense linear probe on frozen patch tokens: a softmax-regression classifier per patch
  (which object category, or background, covers it), scored per pixel on held-out scenes:
  pixel accuracy and mean IoU.
- Referring-expression accuracy: the share of generated boxes with IoU >= 0.5 against the truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


@dataclasses.dataclass(frozen=True)
class DenseProbeResult:
    """A dense linear probe's scores on held-out scenes.

    Attributes:
        pixel_accuracy: share of pixels whose predicted category is right.
        mean_iou: mean over categories present (in truth or prediction) of their IoU.
        per_class_iou: ``[classes]`` IoU per category (NaN where absent from both).
        predictions: ``[scenes, height, width]`` predicted categories.
    """

    pixel_accuracy: float
    mean_iou: float
    per_class_iou: npt.NDArray[np.float64]
    predictions: npt.NDArray[np.int64]


def patch_labels(label_maps: npt.ArrayLike, grid: int) -> npt.NDArray[np.int64]:
    """The majority label of each patch of a ``grid x grid`` patch layout (row-major).

    Args:
        label_maps: ``[scenes, height, width]`` integer labels; height and width divisible by
            ``grid``.
        grid: patches per side.

    Returns:
        ``[scenes, grid * grid]`` labels (ties: the smallest label).

    Raises:
        ValueError: a side not divisible by ``grid``.

    Examples:
        >>> maps = np.zeros((1, 4, 4), dtype=int)
        >>> maps[0, :2, 2:] = 3
        >>> patch_labels(maps, 2).tolist()
        [[0, 3, 0, 0]]
    """
    maps = np.asarray(label_maps)
    scenes, height, width = maps.shape
    if height % grid or width % grid:
        raise ValueError(f"label maps {height}x{width} do not split into a {grid}x{grid} grid")
    blocks = maps.reshape(scenes, grid, height // grid, grid, width // grid)
    blocks = blocks.transpose(0, 1, 3, 2, 4).reshape(scenes, grid * grid, -1)
    classes = int(maps.max()) + 1
    counts = np.zeros((scenes, grid * grid, classes), dtype=np.int64)
    for label in range(classes):
        counts[..., label] = (blocks == label).sum(axis=2)
    majority: npt.NDArray[np.int64] = counts.argmax(axis=2).astype(np.int64)
    return majority


def segmentation_metrics(
    predictions: npt.ArrayLike, labels: npt.ArrayLike, *, num_classes: int
) -> tuple[float, float, npt.NDArray[np.float64]]:
    """Pixel accuracy, mean IoU and per-class IoU of predicted label maps.

    .. math::
        \\mathrm{IoU}_c = \\frac{|P_c \\cap T_c|}{|P_c \\cup T_c|}, \\quad
        \\mathrm{mIoU} = \\frac{1}{|C^*|} \\sum_{c \\in C^*} \\mathrm{IoU}_c

    ``C*``: the classes present in the prediction or the truth.

    Args:
        predictions: ``[scenes, height, width]`` predicted labels.
        labels: ``[scenes, height, width]`` true labels.
        num_classes: labels are in ``[0, num_classes)``.

    Returns:
        ``(pixel_accuracy, mean_iou, per_class_iou)``.

    Examples:
        >>> truth = np.array([[[0, 0], [1, 1]]])
        >>> accuracy, miou, _ = segmentation_metrics(np.zeros_like(truth), truth, num_classes=2)
        >>> accuracy, miou
        (0.5, 0.25)
    """
    predicted = np.asarray(predictions).ravel()
    truth = np.asarray(labels).ravel()
    if predicted.shape != truth.shape:
        raise ValueError(f"predictions {predicted.shape} and labels {truth.shape} differ")
    confusion = np.bincount(
        truth * num_classes + predicted, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
    accuracy = float(intersection.sum() / max(1, truth.size))
    return accuracy, float(np.nanmean(iou)), iou


def dense_linear_probe(
    train_features: npt.ArrayLike,
    train_label_maps: npt.ArrayLike,
    test_features: npt.ArrayLike,
    test_label_maps: npt.ArrayLike,
    *,
    num_classes: int,
    steps: int = 300,
    learning_rate: float = 0.05,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> DenseProbeResult:
    """Fit a linear classifier on frozen patch tokens; score it per pixel on held-out scenes.

    Each training patch is labelled with the majority category of its pixels
    (:func:`patch_labels`); features are standardised with the training mean and std; the
    classifier is multinomial logistic regression trained full-batch with Adam. A test patch's
    prediction covers all its pixels (nearest upsampling), scored against the full-resolution
    maps (:func:`segmentation_metrics`).

    Args:
        train_features: ``[scenes, patches, dim]`` frozen patch tokens (row-major square grid).
        train_label_maps: ``[scenes, height, width]`` per-pixel categories.
        test_features: ``[test_scenes, patches, dim]``.
        test_label_maps: ``[test_scenes, height, width]``.
        num_classes: categories, background included.
        steps: full-batch Adam steps.
        learning_rate: Adam step size.
        weight_decay: L2 penalty on the weights.
        seed: initialisation seed.

    Returns:
        :class:`DenseProbeResult`.

    Raises:
        ValueError: the patch count is not a square, or shapes disagree.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> maps = rng.integers(0, 2, (20, 1, 1)).repeat(4, axis=1).repeat(4, axis=2)
        >>> features = np.eye(2)[maps[:, :2, :2].reshape(20, 4)] + rng.normal(0, 0.1, (20, 4, 2))
        >>> result = dense_linear_probe(features, maps, features, maps, num_classes=2)
        >>> result.pixel_accuracy
        1.0
    """
    train = np.asarray(train_features, dtype=np.float64)
    test = np.asarray(test_features, dtype=np.float64)
    train_maps = np.asarray(train_label_maps)
    test_maps = np.asarray(test_label_maps)
    patches = train.shape[1]
    grid = round(patches**0.5)
    if grid * grid != patches or test.shape[1] != patches:
        raise ValueError(f"expected a square patch grid on both sides, got {patches} patches")
    targets = patch_labels(train_maps, grid).ravel()
    inputs = train.reshape(-1, train.shape[-1])
    mean = inputs.mean(axis=0)
    std = inputs.std(axis=0) + 1e-6
    inputs = (inputs - mean) / std
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.01, (inputs.shape[1], num_classes))
    bias = np.zeros(num_classes)
    one_hot = np.eye(num_classes)[targets]
    moments = [np.zeros_like(weights), np.zeros_like(bias)]
    squares = [np.zeros_like(weights), np.zeros_like(bias)]
    for step in range(1, steps + 1):
        logits = inputs @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        error = (probabilities - one_hot) / len(inputs)
        gradients = [inputs.T @ error + weight_decay * weights, error.sum(axis=0)]
        for index, (parameter, gradient) in enumerate(zip((weights, bias), gradients, strict=True)):
            moments[index] = 0.9 * moments[index] + 0.1 * gradient
            squares[index] = 0.999 * squares[index] + 0.001 * gradient**2
            corrected = moments[index] / (1 - 0.9**step)
            scale = np.sqrt(squares[index] / (1 - 0.999**step)) + 1e-8
            parameter -= learning_rate * corrected / scale
    test_inputs = (test.reshape(-1, test.shape[-1]) - mean) / std
    patch_predictions = (test_inputs @ weights + bias).argmax(axis=1).reshape(-1, grid, grid)
    _scenes, height, width = test_maps.shape
    predictions = patch_predictions.repeat(height // grid, axis=1).repeat(width // grid, axis=2)
    accuracy, miou, iou = segmentation_metrics(predictions, test_maps, num_classes=num_classes)
    return DenseProbeResult(accuracy, miou, iou, predictions.astype(np.int64))


def referring_expression_accuracy(
    predicted_boxes: Sequence[Sequence[float] | None],
    true_boxes: Sequence[Sequence[float]],
    *,
    threshold: float = 0.5,
) -> float:
    """Share of referring expressions whose predicted box has IoU >= ``threshold`` with the truth.

    Args:
        predicted_boxes: per expression ``(x0, y0, x1, y1)``, or None when the decoder produced
            no parsable box (counted as a miss).
        true_boxes: per expression the true box.
        threshold: the IoU needed (0.5: the RefCOCO convention).

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: the two lists differ in length or are empty.

    Examples:
        >>> referring_expression_accuracy([[0, 0, 10, 10], None], [[0, 0, 10, 12], [0, 0, 4, 4]])
        0.5
    """
    from siglip_data.grounding import box_iou

    if len(predicted_boxes) != len(true_boxes) or not true_boxes:
        raise ValueError(
            f"expected as many predicted as true boxes (>= 1), got {len(predicted_boxes)} and "
            f"{len(true_boxes)}"
        )
    hits = sum(
        predicted is not None and box_iou(predicted, truth) >= threshold
        for predicted, truth in zip(predicted_boxes, true_boxes, strict=True)
    )
    return hits / len(true_boxes)
