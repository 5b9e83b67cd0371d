import numpy as np
import pytest

from styledrop import world


def test_world_has_enough_classes_and_a_split():
    assert len(world.CONTENTS) >= 16 and len(world.STYLE_NAMES) >= 16
    assert len(world.HELDOUT_STYLES) >= 4 and len(world.HELDOUT_CONTENTS) >= 3
    pretrain = world.pairs("pretrain")
    held_pairs = world.pairs("heldout_pair")
    assert held_pairs and not set(pretrain) & set(held_pairs)
    # held-out classes never appear in pretraining pairs
    assert not {c for c, _ in pretrain} & set(world.HELDOUT_CONTENTS)
    assert not {s for _, s in pretrain} & set(world.HELDOUT_STYLES)
    # every held-out pair is made of a content and a style the base does see in pretraining
    assert {c for c, _ in held_pairs} <= {c for c, _ in pretrain}
    assert {s for _, s in held_pairs} <= {s for _, s in pretrain}
    assert len(world.pairs()) == len(world.CONTENTS) * len(world.STYLE_NAMES)


def test_held_out_variants_are_new_instances_of_pretraining_styles_never_pretrained_on():
    pretrain_styles = {s for _, s in world.pairs("pretrain")}
    assert len(world.HELDOUT_VARIANTS) == 4 and not pretrain_styles & set(world.HELDOUT_VARIANTS)
    for variant, parent in world.styles.VARIANT_OF.items():
        assert parent in pretrain_styles and parent in world.PRETRAIN_STYLES
        assert world.split_of("house", variant) == "heldout_variant"
        assert world.split_of("rocket", variant) == "heldout_both"
        a = world.render("house", variant, np.random.default_rng(1))
        b = world.render("house", parent, np.random.default_rng(1))
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 20  # a clear change of palette, ground or tiles
    assert {s for _, s in world.pairs("heldout_variant")} == set(world.HELDOUT_VARIANTS)


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a = world.batch(12, 7, world.pairs())
    b = world.batch(12, 7, world.pairs())
    c = world.batch(12, 8, world.pairs())
    assert all(x.image.tobytes() == y.image.tobytes() and x.caption == y.caption for x, y in zip(a, b))
    assert any(x.image.tobytes() != z.image.tobytes() for x, z in zip(a, c))


def test_render_shape_and_variation_within_a_pair():
    imgs = [world.render("fish", "pop_art", np.random.default_rng(i)) for i in range(4)]
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in imgs)
    assert len({im.tobytes() for im in imgs}) == 4  # position, scale, rotation vary


def test_styles_differ_in_palette():
    # mean colour per style over a few contents: every pair of styles is apart
    means = {}
    for s in world.STYLE_NAMES:
        ims = [world.render(c, s, np.random.default_rng(0)) for c in world.CONTENTS[:6]]
        means[s] = np.mean(ims, axis=(0, 1, 2))
    names = list(means)
    dists = [np.abs(means[a] - means[b]).max() for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(dists) > 5, "two styles have nearly the same average colour"


def test_captions():
    assert world.caption("fish", "neon_glow") == "a fish in neon glow style"
    assert world.caption("umbrella", None) == "an umbrella"
    s = world.sample(3, 0, [("cat", "lava")])
    assert "cat" in s.caption and "lava" in s.caption and s.split == "heldout_style"


@pytest.mark.parametrize("kwargs", [{"style": "nope"}, {"content": "dragon"}, {"split": "odd"}])
def test_unknown_names_are_refused_with_valid_values(kwargs):
    with pytest.raises(ValueError, match="expected one of"):
        world.choose_pairs(**kwargs)


def _centroids(content, pose, n=24):
    out = []
    for i in range(n):
        m = np.asarray(world._mask(content, np.random.default_rng(i), pose), np.float32)
        ys, xs = np.mgrid[:64, :64]
        out.append(((m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()))
    return np.array(out)


def test_centered_pose_keeps_objects_near_the_middle_and_random_pose_moves_them():
    for content in ("fish", "house"):
        centered, random = _centroids(content, "centered"), _centroids(content, "random")
        assert centered.std(0).max() < 2.0  # 2 px jitter (and scale) only
        assert random.std(0).max() > 4.0
    a = world.sample(3, 5, world.pairs("pretrain"), pose="centered")
    b = world.sample(3, 5, world.pairs("pretrain"), pose="centered")
    assert a.image.tobytes() == b.image.tobytes()  # seeded like the random pose
    with pytest.raises(ValueError, match="pose"):
        world.render("fish", "pop_art", np.random.default_rng(0), pose="sideways")


def test_varied_rendering_is_captioned_by_content_only_and_varies_its_look():
    choices = [(c, world.VARIED) for c in world.PRETRAIN_CONTENTS]
    samples = [world.sample(i, 4, choices, "centered") for i in range(24)]
    assert all(s.caption in (world.caption(s.content, None, 0), world.caption(s.content, None, 1)) for s in samples)
    assert all(s.split == "pretrain" for s in samples)
    again = world.sample(5, 4, choices, "centered")
    assert again.image.tobytes() == samples[5].image.tobytes()
    # the look changes from picture to picture far more than within one named style
    spread = np.std([s.image.reshape(-1, 3).mean(0) for s in samples], axis=0).mean()
    named = [world.sample(i, 4, [(c, "watercolor") for c in world.PRETRAIN_CONTENTS], "centered") for i in range(24)]
    assert spread > 3 * np.std([s.image.reshape(-1, 3).mean(0) for s in named], axis=0).mean()
    # the object stands out: its pixels differ from the background's
    for i in range(8):
        rng = np.random.default_rng(i)
        mask = np.asarray(world._mask("house", np.random.default_rng(i), "centered"), np.float32) > 128
        im = world.render("house", world.VARIED, rng, "centered").astype(np.float32)
        assert np.abs(im[mask].mean(0) - im[~mask].mean(0)).sum() > 20
