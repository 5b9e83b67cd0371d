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


def _spread_vq(cfg):
    """A VQ of ``cfg``'s shape whose codes are its own encoder's outputs on world pictures, so that pictures use
    many of them (a few tiny training steps collapse onto one code)."""
    from styledrop import world
    from styledrop.oracle import to_tensor
    torch.manual_seed(0)
    vq = TinyVQModel(channels=cfg.channels, code_dim=cfg.code_dim, codebook_size=cfg.codebook_size,
                     levels=cfg.levels, num_res_blocks=cfg.num_res_blocks).eval()
    x = to_tensor([world.sample(k, 5, world.pairs("pretrain")).image for k in range(16)])
    with torch.no_grad():
        z = vq.encoder(x).permute(0, 2, 3, 1).reshape(-1, cfg.code_dim)
        vq.codebook.weight.copy_(z[torch.randperm(len(z))[:cfg.codebook_size]])
    return vq


def test_pretrain_merges_a_finished_vq_without_training_it_again(tmp_path):
    import json
    from dataclasses import replace

    from styledrop.muse.pretrain import UNMERGED, pretrain, save_stage, seed_work

    from .tiny import TINY
    merged_cfg = replace(TINY, vq=replace(TINY.vq, merge=4, merge_pictures=16))
    assert "merge" not in TINY.vq.recipe() and merged_cfg.vq.unmerged().recipe() == TINY.vq.recipe()
    stages = tmp_path / "stages"  # finished stages holding the unmerged VQ, as pretrained_stages/ does
    save_stage(_spread_vq(TINY.vq), stages / "vqvae", TINY.vq.recipe())
    work = tmp_path / "work"
    recipes = {"vqvae": merged_cfg.vq.recipe(), UNMERGED: merged_cfg.vq.unmerged().recipe()}
    assert seed_work(work, stages, recipes) == [UNMERGED]  # copied to be merged, not refused
    assert seed_work(work, stages, {"vqvae": merged_cfg.vq.recipe()}) == []  # without the key: not taken
    pretrain(merged_cfg, tmp_path / "unused", work, only="vq")
    assert not (work / "vq.ckpt.safetensors").exists()  # merged from the copy, not trained anew
    vq = TinyVQModel.from_pretrained(work / "vqvae")
    assert vq.codebook_size == 4
    made = json.loads((work / "vqvae" / "styledrop_stage.json").read_text())["recipe"]
    assert made["merge"] == 4 and "steps" not in made  # merged from a reused VQ: reusable at any steps, as it was
    assert TinyVQModel.from_pretrained(work / UNMERGED).codebook_size == TINY.vq.codebook_size
    pretrain(merged_cfg, tmp_path / "unused", work, only="vq")  # finished: nothing to do
    assert torch.equal(TinyVQModel.from_pretrained(work / "vqvae").codebook.weight, vq.codebook.weight)

    # a merged VQ kept beside the unmerged one (pretrained_stages/vqvae_256) is taken as it is, not merged again
    save_stage(vq, stages / "vqvae_4", merged_cfg.vq.recipe())
    again = tmp_path / "again"
    assert seed_work(again, stages, recipes) == ["vqvae"]
    assert torch.equal(TinyVQModel.from_pretrained(again / "vqvae").codebook.weight, vq.codebook.weight)
    assert seed_work(tmp_path / "unmerged", stages, {"vqvae": TINY.vq.recipe()}) == ["vqvae"]  # no merge asked
    assert TinyVQModel.from_pretrained(tmp_path / "unmerged" / "vqvae").codebook_size == TINY.vq.codebook_size


def test_pretrain_refuses_a_merge_it_cannot_do(cli, tmp_path):
    code, _, err = cli("pretrain", "--vq-merge", 1024, "--work", tmp_path / "w", "--out", tmp_path / "b")
    assert code == 2 and "1024 codes can be merged into 1..1023" in err and "not 1024" in err
    assert not (tmp_path / "w").exists() and not (tmp_path / "b").exists()  # refused before anything is written
    from styledrop.io import UserError
    from styledrop.muse.train_vq import VQTrainConfig, merge_vq
    vq = _spread_vq(VQTrainConfig(channels=8, codebook_size=32))
    with pytest.raises(UserError, match=r"cannot merge the VQ's codebook: can merge \d+ used codes into"):
        merge_vq(vq, VQTrainConfig(channels=8, codebook_size=32, merge=31, merge_pictures=4))
