"""Prompt templates for zero-shot classification.

``IMAGENET_TEMPLATES`` is the 80-prompt ImageNet ensemble published with CLIP (Radford et al. 2021,
arXiv:2103.00020, "Prompt engineering for ImageNet"); big_vision's SigLIP / SigLIP 2 ImageNet
numbers use the same ensemble. ``{c}`` marks where the class name goes.
"""

from __future__ import annotations

from collections.abc import Sequence

PLACEHOLDER = "{c}"

# One prompt: CLIP's default single template.
ONE_TEMPLATE: tuple[str, ...] = ("a photo of a {c}.",)

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {c}.",
    "a photo of many {c}.",
    "a sculpture of a {c}.",
    "a photo of the hard to see {c}.",
    "a low resolution photo of the {c}.",
    "a rendering of a {c}.",
    "graffiti of a {c}.",
    "a bad photo of the {c}.",
    "a cropped photo of the {c}.",
    "a tattoo of a {c}.",
    "the embroidered {c}.",
    "a photo of a hard to see {c}.",
    "a bright photo of a {c}.",
    "a photo of a clean {c}.",
    "a photo of a dirty {c}.",
    "a dark photo of the {c}.",
    "a drawing of a {c}.",
    "a photo of my {c}.",
    "the plastic {c}.",
    "a photo of the cool {c}.",
    "a close-up photo of a {c}.",
    "a black and white photo of the {c}.",
    "a painting of the {c}.",
    "a painting of a {c}.",
    "a pixelated photo of the {c}.",
    "a sculpture of the {c}.",
    "a bright photo of the {c}.",
    "a cropped photo of a {c}.",
    "a plastic {c}.",
    "a photo of the dirty {c}.",
    "a jpeg corrupted photo of a {c}.",
    "a blurry photo of the {c}.",
    "a photo of the {c}.",
    "a good photo of the {c}.",
    "a rendering of the {c}.",
    "a {c} in a video game.",
    "a photo of one {c}.",
    "a doodle of a {c}.",
    "a close-up photo of the {c}.",
    "a photo of a {c}.",
    "the origami {c}.",
    "the {c} in a video game.",
    "a sketch of a {c}.",
    "a doodle of the {c}.",
    "a origami {c}.",
    "a low resolution photo of a {c}.",
    "the toy {c}.",
    "a rendition of the {c}.",
    "a photo of the clean {c}.",
    "a photo of a large {c}.",
    "a rendition of a {c}.",
    "a photo of a nice {c}.",
    "a photo of a weird {c}.",
    "a blurry photo of a {c}.",
    "a cartoon {c}.",
    "art of a {c}.",
    "a sketch of the {c}.",
    "a embroidered {c}.",
    "a pixelated photo of a {c}.",
    "itap of the {c}.",
    "a jpeg corrupted photo of the {c}.",
    "a good photo of a {c}.",
    "a plushie {c}.",
    "a photo of the nice {c}.",
    "a photo of the small {c}.",
    "a photo of the weird {c}.",
    "the cartoon {c}.",
    "art of the {c}.",
    "a drawing of the {c}.",
    "a photo of the large {c}.",
    "a black and white photo of a {c}.",
    "the plushie {c}.",
    "a dark photo of a {c}.",
    "itap of a {c}.",
    "graffiti of the {c}.",
    "a toy {c}.",
    "itap of my {c}.",
    "a photo of a cool {c}.",
    "a photo of a small {c}.",
    "a tattoo of the {c}.",
)

# The 7-prompt subset the CLIP authors selected on ImageNet (same notebook).
IMAGENET_TEMPLATES_7: tuple[str, ...] = (
    "itap of a {c}.",
    "a bad photo of the {c}.",
    "a origami {c}.",
    "a photo of the large {c}.",
    "a {c} in a video game.",
    "art of the {c}.",
    "a photo of the small {c}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "imagenet80": IMAGENET_TEMPLATES,
    "imagenet7": IMAGENET_TEMPLATES_7,
    "one": ONE_TEMPLATE,
}


def get_templates(name: str) -> tuple[str, ...]:
    """The template set called ``name``: ``"imagenet80"``, ``"imagenet7"`` or ``"one"``.

    Examples:
        >>> from siglip_eval._templates import get_templates
        >>> len(get_templates("imagenet80"))
        80
    """
    if name not in TEMPLATE_SETS:
        raise ValueError(f"templates: expected one of {sorted(TEMPLATE_SETS)}, got {name!r}")
    return TEMPLATE_SETS[name]


def fill_templates(templates: Sequence[str], class_name: str) -> list[str]:
    """Every template with ``{c}`` (or CLIP's ``{}``) replaced by ``class_name``.

    Plain string replacement, not ``str.format``: braces in class names are safe.

    Args:
        templates: prompts, each with ``{c}`` or ``{}`` where the class name goes.
        class_name: the name to fill in.

    Returns:
        One prompt per template, in order.

    Raises:
        TypeError: ``templates`` is a single string.
        ValueError: no templates, or a template without a placeholder.

    Examples:
        >>> from siglip_eval import fill_templates
        >>> fill_templates(["a photo of a {c}.", "art of the {c}."], "dog")
        ['a photo of a dog.', 'art of the dog.']
    """
    if isinstance(templates, str):
        raise TypeError("templates: expected a sequence of strings, got a single str")
    if len(templates) == 0:
        raise ValueError("templates: expected at least one template, got none")
    filled = []
    for template in templates:
        if isinstance(template, str) and PLACEHOLDER in template:
            filled.append(template.replace(PLACEHOLDER, class_name))
        elif isinstance(template, str) and "{}" in template:
            filled.append(template.replace("{}", class_name))
        else:
            raise ValueError(
                f"templates: expected strings containing {PLACEHOLDER!r} or '{{}}', got {template!r}"
            )
    return filled
