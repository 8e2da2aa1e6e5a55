"""Kvasir data: class names, v1/v2 folder discovery, download and safe extraction."""

from __future__ import annotations

HEALTHY_CLASSES = ("normal-cecum", "normal-pylorus", "normal-z-line")
POLYP_CLASS = "polyps"
ALL_CLASSES = (*HEALTHY_CLASSES, POLYP_CLASS)
