"""The Muse base: VQ tokenizer, text encoder, transformer G, masking schedule and sampler."""
