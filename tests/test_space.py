import numpy as np
import pytest

from styledrop import world
from styledrop.world import space


def _space(n, seed=0):
    return [world.sample(i, seed, world.choose_pairs("pretrain", world.SPACE)) for i in range(n)]


def test_style_space_is_seeded_captioned_by_its_factors_and_varied():
    a, b = _space(40), _space(40)
    assert all(x.image.tobytes() == y.image.tobytes() and x.caption == y.caption for x, y in zip(a, b))
    looks = {s.look for s in a}
    assert len(looks) == 40  # a new look per picture
    for s in a:
        assert s.split == "pretrain" and s.style == world.SPACE
        assert space.parse_look(s.look).descriptor == s.look  # the caption names factors that can be read back
        assert s.caption.startswith(("a ", "an ")) and s.content in s.caption
        assert s.look in s.caption or s.caption in (world.caption(s.content, None, t) for t in range(2))
    assert any(s.look not in s.caption for s in a)  # content-only captions are kept too
    means = np.stack([s.image.reshape(-1, 3).mean(0) for s in a])
    assert means.std(0).min() > 20  # the palette really varies


def test_a_look_renders_what_its_descriptor_says():
    look = space.parse_look("with red fill, a thick navy outline, on blue")
    s = world.sample_look(0, 0, [("house", world.SPACE)], look)
    assert s.look == look.descriptor and s.content == "house"
    img = s.image.reshape(-1, 3).astype(int)
    red, blue = np.array(space.COLOURS["red"]) * 255, np.array(space.COLOURS["blue"]) * 255
    near = lambda c: (np.abs(img - c).sum(1) < 60).mean()  # noqa: E731
    assert near(blue) > 0.3 and near(red) > 0.05  # a blue ground, a red object


def test_no_drawn_look_imitates_a_held_out_style():
    for s in _space(300, seed=3):
        look = space.parse_look(s.look)
        assert space.too_close(look) is None
        assert look.background not in space.HELDOUT_GROUNDS


def test_open_grounds_draw_held_out_styles_primitives_but_never_their_looks():
    pairs = world.choose_pairs("pretrain", world.SPACE)
    drawn = [world.open_look_sample(i, 3, pairs) for i in range(300)]
    grounds = set()
    for s in drawn:
        look = space.parse_look(s.look, open_grounds=True)  # never too close to a held-out look
        assert look.descriptor == s.look and s.style == world.SPACE
        grounds.add(look.background)
    assert grounds & set(space.HELDOUT_GROUNDS) == set(space.HELDOUT_GROUNDS)  # yellow, orange, white, black, brown
    # the held-out looks themselves stay out, on their own grounds
    pop = space.Look("red", outline="thick", background="yellow", background_texture="dotted", background2="orange")
    assert space.too_close(pop, open_grounds=True) == "pop_art"
    assert space.too_close(space.Look("red", "striped", "blue", background="white"), open_grounds=True) == "rainbow"
    assert space.too_close(space.Look("orange", background="black"), open_grounds=True) == "lava"
    assert space.too_close(space.Look("blue", background="yellow"), open_grounds=True) is None
    assert space.too_close(space.Look("blue", background="yellow")) == "pop_art"  # closed grounds as before
    # pretraining's own stream is untouched by the option
    assert [s.image.tobytes() for s in _space(5)] == [s.image.tobytes() for s in _space(5)]


@pytest.mark.parametrize("text, message", [
    ("with magenta fill, on blue", "unknown fill 'magenta'"),
    ("with red and blue wavy fill, on teal", "unknown fill texture 'wavy'"),
    ("with red fill on blue", "cannot read the look"),
    ("with red fill, on blue, sparkly", "unknown effect 'sparkly'"),
    ("with blue fill, a thick black outline, on yellow", "held-out style pop_art"),
    ("with red and orange mottled fill, on navy", "held-out style lava"),
])
def test_bad_looks_are_refused_naming_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        space.parse_look(text)


def test_look_scores_tell_the_asked_look_from_another():
    from dataclasses import replace

    from styledrop.evaluate import look_scores, space_prompt_set
    real = space_prompt_set(60)
    looks = [world.space.parse_look(s.look) for s in real]
    right = look_scores([s.image for s in real], looks)
    assert right["ground_acc"] > 0.85 and right["fill_acc"] > 0.7
    # the same pictures judged against looks with other colours
    others = [replace(lk, background="pink" if lk.background != "pink" else "green", background2="pink"
                      if lk.background != "pink" else "green", fill="teal" if lk.fill != "teal" else "red",
                      fill2="teal" if lk.fill != "teal" else "red", outline_colour="teal" if lk.fill != "teal"
                      else "red") for lk in looks]
    wrong = look_scores([s.image for s in real], others)
    assert wrong["ground_acc"] < 0.3 and wrong["fill_acc"] < 0.4
