"""Class names: the Kvasir v1 classes we read and the two groups they are written as.

The three healthy Kvasir classes become the `normal` group (the only images the VAE trains on);
`polyps` stays a group of its own (the unseen test images).
"""

from __future__ import annotations

HEALTHY_CLASSES = ("normal-cecum", "normal-pylorus", "normal-z-line")
POLYP_CLASS = "polyps"
ALL_CLASSES = (*HEALTHY_CLASSES, POLYP_CLASS)
NORMAL_GROUP = "normal"  # output group of the healthy classes
POLYP_GROUP = "polyps"  # output group of the polyp class
GROUPS = (NORMAL_GROUP, POLYP_GROUP)


def group_of(class_name: str) -> str:
    """Output group of a Kvasir class: "normal" for the healthy classes, "polyps" for polyps."""
    if class_name == POLYP_CLASS:
        return POLYP_GROUP
    if class_name in HEALTHY_CLASSES:
        return NORMAL_GROUP
    raise ValueError(f"class {class_name!r}: expected one of {', '.join(ALL_CLASSES)}")
