"""Merging a VQ codebook into fewer codes (muse.vq.merge_codebook)."""

import pytest
import torch
import torch.nn.functional as F

from styledrop.muse.vq import TinyVQModel, code_usage, merge_codebook


def _vq_with_two_groups():
    """8 codes in two tight groups around two directions, plus nothing else."""
    torch.manual_seed(0)
    vq = TinyVQModel(channels=8, code_dim=4, codebook_size=8, levels=2, num_res_blocks=1).eval()
    a, b = F.normalize(torch.tensor([1.0, 0, 0, 0]), dim=0), F.normalize(torch.tensor([0, 1.0, 0, 0]), dim=0)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.stack([a, b] * 4) + 0.01 * torch.randn(8, 4))
    return vq, a, b


def test_merging_keeps_the_groups_and_the_decoder():
    vq, a, b = _vq_with_two_groups()
    # the two most used codes are both in group a: only the k-means moves a centre over to group b
    merged = merge_codebook(vq, torch.tensor([10.0, 1] * 4), 2)
    assert merged.codebook_size == 2 and merged.config.codebook_size == 2
    centres = merged.code_vectors()
    assert max(centres @ a) > 0.99 and max(centres @ b) > 0.99  # one centre per group
    for name, t in vq.decoder.state_dict().items():
        assert torch.equal(merged.decoder.state_dict()[name], t)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    idx = merged.encode_indices(x)
    assert idx.max() < 2
    # codes of a group decode alike, so the merged VQ reconstructs nearly as the original does
    assert (merged.decode_indices(idx) - vq.decode_indices(vq.encode_indices(x))).abs().max() < 0.05


def test_unused_codes_do_not_pull_a_centre():
    vq, a, b = _vq_with_two_groups()
    with torch.no_grad():
        vq.codebook.weight[7] = torch.tensor([0.6, 0.0, 0.8, 0.0])  # between group a and nowhere
    counts = torch.tensor([5.0, 5, 5, 5, 5, 5, 5, 0])
    centres = merge_codebook(vq, counts, 2).code_vectors()
    assert max(centres @ a) > 0.999


def test_merging_to_as_many_codes_as_are_used_is_refused():
    vq, _, _ = _vq_with_two_groups()
    with pytest.raises(ValueError, match="can merge 3 used codes into 1..2, not 3"):
        merge_codebook(vq, torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0]), 3)


def test_code_usage_counts_every_token():
    vq, _, _ = _vq_with_two_groups()
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    counts = code_usage(vq, x, batch=2)
    assert counts.shape == (8,) and counts.sum() == 5 * 4 * 4
    assert torch.equal(counts, torch.bincount(vq.encode_indices(x).flatten(), minlength=8).float())
