"""styledrop: StyleDrop (Sohn et al. 2023) on a masked generative text-to-image transformer."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # model_index.json names the toy VQ ["styledrop", "TinyVQModel"]: diffusers' AmusedPipeline.from_pretrained
    # looks it up here, and also asks for the base classes it knows ("ModelMixin"). Imported lazily: the CLI's
    # start-up should not pay for torch.
    if name == "TinyVQModel":
        from .muse.vq import TinyVQModel
        return TinyVQModel
    if name == "ModelMixin":
        from diffusers import ModelMixin
        return ModelMixin
    raise AttributeError(f"module 'styledrop' has no attribute {name!r}")
