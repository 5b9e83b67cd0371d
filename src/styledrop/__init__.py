"""styledrop: StyleDrop (Sohn et al. 2023) on a masked generative text-to-image transformer."""

__version__ = "0.1.0"
