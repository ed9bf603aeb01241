"""The self-ensemble of regression models: the 8 views of a tile, each turned back, averaged."""

import numpy as np
import pytest
import torch

from unblur.restore import Restorer, dihedral, make_restorer, split_sampling, undo_dihedral


def test_the_eight_views_are_distinct_and_each_is_turned_back():
    x = torch.arange(2 * 3 * 4.0).reshape(1, 2, 3, 4)
    views = [dihedral(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) + tuple(v.shape) for v in views}) == 8
    assert all(torch.equal(undo_dihedral(v, k), x) for k, v in enumerate(views))
    assert [tuple(v.shape[-2:]) for v in views] == [(3, 4)] * 4 + [(4, 3)] * 4


@pytest.fixture(scope="module")
def photo():
    from unblur.demo import SAMPLES
    from unblur.io import read_image

    return read_image(SAMPLES / "coffee-blurred.png")[0][:48, :72]


MIRRORS = [(2, lambda a: a[:, ::-1]), (4, lambda a: a[::-1]), (8, lambda a: a.transpose(1, 0, 2))]


@pytest.mark.parametrize(("passes", "symmetry"), MIRRORS)
def test_an_ensemble_over_a_group_of_views_commutes_with_them(photo, passes, symmetry):
    """Averaged over a group of views, the result of a mirrored photo is the mirrored result (exactly, up to
    rounding, whatever the network does); one pass is not: the network alone is not symmetric."""
    single = Restorer("nafnet-real-world", device="cpu", tile=0, precision="fp32")
    ensemble = Restorer("nafnet-real-world", device="cpu", tile=0, precision="fp32", ensemble=passes)
    turned = np.ascontiguousarray(symmetry(photo))
    assert np.abs(ensemble.restore(turned) - symmetry(ensemble.restore(photo))).max() < 1e-4
    assert np.abs(single.restore(turned) - symmetry(single.restore(photo))).max() > 1e-3


def test_the_ensemble_is_the_mean_of_the_views_turned_back(photo):
    model = Restorer("nafnet-real-world", device="cpu", tile=0, precision="fp32", ensemble=8)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    with torch.no_grad():
        by_hand = torch.stack([undo_dihedral(model.model.restore(dihedral(x, k)), k) for k in range(8)]).mean(0)
    by_hand = by_hand.clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(model.restore(photo) - by_hand).max() < 1e-5


def test_the_ensemble_is_asked_for_by_name_or_option_and_refused_where_it_has_no_meaning():
    assert split_sampling("nafnet-real-world@x8") == ("nafnet-real-world", {"ensemble": 8})
    assert make_restorer("nafnet-real-world@x2", device="cpu").ensemble == 2
    with pytest.raises(ValueError, match="must be one of 1, 2, 4, 8"):
        Restorer("nafnet-real-world", device="cpu", ensemble=3)
    with pytest.raises(ValueError, match="for regression models"):
        Restorer("deblurdiff-small", device="cpu", ensemble=2)
    with pytest.raises(ValueError, match="prior='tile'"):
        Restorer("nafnet-blurdm", device="cpu", ensemble=2, prior="image")


def test_deblur_takes_the_option_and_refuses_a_count_outside_the_group(tmp_path, capsys):
    from unblur.cli import main
    from unblur.demo import SAMPLES

    src = SAMPLES / "coffee-blurred.png"
    assert main(["deblur", str(src), "-o", str(tmp_path / "out"), "--self-ensemble", "2", "--tile", "0", "-q"]) == 0
    assert (tmp_path / "out" / "coffee-blurred.png").exists()
    with pytest.raises(SystemExit) as exit:
        main(["deblur", str(src), "-o", str(tmp_path / "bad"), "--self-ensemble", "3"])
    assert exit.value.code != 0 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
