"""The pictures: each writes a real, non-blank PNG, survives NaN and single epochs, draws what
it claims (checked through pixel colours), and refuses mismatched inputs with a clear error."""
import numpy as np
import pytest
import torch
from PIL import Image

import plots
from configs import GROUPS

NAN = float("nan")


def record(epoch, **overrides):
    """One metrics.jsonl line with every key the plots read."""
    line = {
        "epoch": epoch, "loss": 2.0 / epoch, "min_group": 0.1 * epoch, "mse": 0.05 / epoch,
        "ssim": 1 - 1 / (epoch + 1), "swap_structure": 0.02, "swap_appearance": 0.01,
        "kl_core": 40.0 * epoch, "kl_detail": 90.0 * epoch, "kl_core_dim": 2.5 * epoch,
        "kl_detail_dim": 0.8 * epoch, "core_var": 0.01 * epoch, "detail_var": 0.02 * epoch,
        "groups": {g: min(1.0, 0.1 * epoch + 0.05 * i) for i, g in enumerate(GROUPS)},
        "bottleneck": {g: 1 / len(GROUPS) for g in GROUPS},
        "steps": 100, "rollbacks": 2, "rejected": 1, "rollback_rate": 0.03,
        "decision": "tighten x0.95",
    }
    line.update(overrides)
    return line


HISTORIES = {
    "several epochs with NaN": [
        # Epoch 1 was all calibration: no LBO step, so no loss, group scores or bottleneck.
        record(1, loss=NAN, min_group=NAN, groups={g: NAN for g in GROUPS},
               bottleneck={g: 0.0 for g in GROUPS}, steps=0, rollback_rate=0.0,
               decision="warm-up"),
        record(2, kl_detail_dim=NAN, core_var=NAN),
        record(3, decision="backoff: restored previous table, rate now 2.5%",
               rollback_rate=0.6),
        record(4, decision="hold: rate 6.2% >= 5%, stopping after next epoch",
               rollback_rate=0.062),
        record(5, decision="stop", rollback_rate=0.07),
    ],
    "single epoch": [record(3)],
    "single epoch, all NaN": [
        record(1, **{key: NAN for key in ("loss", "min_group", "mse", "ssim", "swap_structure",
                                          "swap_appearance", "kl_core", "kl_detail",
                                          "kl_core_dim", "kl_detail_dim", "core_var",
                                          "detail_var", "rollback_rate")},
               groups={g: NAN for g in GROUPS}, bottleneck={g: NAN for g in GROUPS})],
}

HISTORY_PICTURES = {
    "group_balance": lambda path, history: plots.save_group_balance(path, history, GROUPS),
    "training_history": plots.save_training_history,
    "bottleneck_shares": lambda path, history: plots.save_bottleneck_shares(path, history,
                                                                           GROUPS),
    "rollback_rate": lambda path, history: plots.save_rollback_rate(path, history, 0.05),
}


def read_png(path):
    """The file as an (H, W, 3) uint8 array, after checking it is a plausible, non-blank PNG."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert 200 <= width <= 4000 and 200 <= height <= 4000, (width, height)
    assert pixels.std() > 0, "blank picture"
    return pixels


def count_colour(pixels, rgb, tolerance=2):
    return int((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def solid(n, rgb, size=32):
    """n images of one colour, (n, 3, size, size) in [0, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(n, 3, size, size)


# ----------------------------------------------------------------------------- images

def test_detail_contribution_is_five_times_the_difference_around_grey_clipped():
    recon = torch.tensor([0.60, 0.50, 1.00, 0.00, 0.55, 0.30])
    recon_core = torch.tensor([0.50, 0.52, 0.00, 1.00, 0.50, 0.30])
    expected = torch.tensor([1.00, 0.40, 1.00, 0.00, 0.75, 0.50])
    assert torch.allclose(plots.detail_contribution(recon, recon_core), expected, atol=1e-6)
    assert np.allclose(plots.detail_contribution(recon.numpy(), recon_core.numpy()),
                       expected.numpy(), atol=1e-6)


def test_reconstructions_draw_every_row_and_the_amplified_detail(tmp_path):
    n = 8
    x = solid(2 * n, (1.0, 0.0, 0.0))             # red originals
    recon = solid(2 * n, (0.30, 0.50, 0.70))
    recon_core = solid(2 * n, (0.30, 0.50, 0.62))  # detail = 0.5 + 5*(0, 0, 0.08) = (.5, .5, .9)
    path = plots.save_reconstructions(tmp_path / "reconstructions.png", x, recon, recon_core, n=n)
    pixels = read_png(path)
    # Each row's colour covers at least n images of 40 x 40 drawn pixels (they are drawn larger).
    for rgb in ((255, 0, 0), (77, 128, 178), (77, 128, 158), (128, 128, 230)):
        assert count_colour(pixels, rgb) > n * 40 * 40, rgb


def red_images_in_a_row(pixels):
    """How many separate red images the widest horizontal line through red pixels crosses."""
    red = (np.abs(pixels.astype(int) - (255, 0, 0)).max(axis=-1) <= 2).astype(int)
    starts = np.diff(red, axis=1, prepend=0) == 1
    return int(starts.sum(axis=1).max())


@pytest.mark.parametrize("n", [3, 8])
def test_reconstructions_show_the_first_n_images_as_columns(tmp_path, n):
    x, recon = solid(16, (1.0, 0.0, 0.0)), solid(16, (0.0, 0.0, 1.0))
    pixels = read_png(plots.save_reconstructions(tmp_path / "r.png", x, recon, recon, n=n))
    assert red_images_in_a_row(pixels) == n


def test_reconstructions_refuse_batches_of_different_shapes(tmp_path):
    x = torch.rand(8, 3, 32, 32)
    with pytest.raises(ValueError, match=r"must match in shape.*recon_core \(8, 3, 16, 16\)"):
        plots.save_reconstructions(tmp_path / "r.png", x, x, torch.rand(8, 3, 16, 16))
    with pytest.raises(ValueError, match=r"x: expected images of shape \(N, 3, H, W\)"):
        plots.save_reconstructions(tmp_path / "r.png", x[:, :1], x, x)


def test_traversals_one_row_per_dim(tmp_path):
    values = torch.linspace(-3, 3, 5).tolist()
    heights = {}
    for dims in ([0, 3], [0, 3, 5, 7, 9, 11]):
        grid = torch.rand(len(dims), len(values), 3, 32, 32)
        path = plots.save_traversals(tmp_path / f"t{len(dims)}.png", grid, dims, values,
                                     "Core traversals (structure)")
        heights[len(dims)] = read_png(path).shape[0]
    assert heights[6] > heights[2]


@pytest.mark.parametrize("dims, values", [([0, 1], [-1.0, 0.0, 1.0]),    # one dim short
                                          ([0, 1, 2], [-1.0, 1.0])])    # one value short
def test_traversals_refuse_a_grid_that_does_not_match_dims_and_values(tmp_path, dims, values):
    grid = torch.rand(3, 3, 3, 16, 16)
    with pytest.raises(ValueError, match=r"traversal grid has shape \(3, 3, 3, 16, 16\), "
                                         r"expected \(len\(dims\), len\(values\)"):
        plots.save_traversals(tmp_path / "t.png", grid, dims, values, "title")
    assert not (tmp_path / "t.png").exists()


def test_cross_reconstruction_draws_its_three_rows(tmp_path):
    n = 4
    path = plots.save_cross_reconstruction(
        tmp_path / "cross.png", solid(n, (1.0, 0.0, 0.0)), solid(n, (0.0, 0.0, 1.0)),
        solid(n, (0.0, 1.0, 0.0)), n=n)
    pixels = read_png(path)
    for rgb in ((255, 0, 0), (0, 0, 255), (0, 255, 0)):
        assert count_colour(pixels, rgb) > n * 40 * 40, rgb


def test_cross_reconstruction_refuses_mismatched_batches(tmp_path):
    with pytest.raises(ValueError, match="cross"):
        plots.save_cross_reconstruction(tmp_path / "c.png", torch.rand(4, 3, 16, 16),
                                        torch.rand(4, 3, 16, 16), torch.rand(4, 3, 8, 8))


# ----------------------------------------------------------------------------- history

@pytest.mark.parametrize("history_name", HISTORIES)
@pytest.mark.parametrize("picture", HISTORY_PICTURES)
def test_history_pictures_survive_nan_and_single_epochs(tmp_path, picture, history_name):
    path = HISTORY_PICTURES[picture](tmp_path / f"{picture}.png", HISTORIES[history_name])
    read_png(path)


@pytest.mark.parametrize("picture", HISTORY_PICTURES)
def test_history_pictures_refuse_an_empty_history(tmp_path, picture):
    with pytest.raises(ValueError, match="history is empty"):
        HISTORY_PICTURES[picture](tmp_path / "empty.png", [])


def test_every_group_has_its_own_colour():
    colours = [plots.GROUP_COLOURS[g] for g in GROUPS]
    assert len(set(colours)) == len(GROUPS)
    assert plots.UNKNOWN_GROUP_COLOUR not in colours


def test_bottleneck_shares_stack_each_groups_share(tmp_path):
    shares = {g: {"recon": 0.25, "realism": 0.75}.get(g, 0.0) for g in GROUPS}
    history = [record(e, bottleneck=shares) for e in (1, 2, 3)]
    pixels = read_png(plots.save_bottleneck_shares(tmp_path / "b.png", history, GROUPS))
    recon_blue = count_colour(pixels, (31, 119, 180))     # tab:blue, GROUP_COLOURS["recon"]
    realism_red = count_colour(pixels, (214, 39, 40))     # tab:red, GROUP_COLOURS["realism"]
    starved_purple = count_colour(pixels, (148, 103, 189))  # tab:purple, "disentangle"
    assert 2.5 < realism_red / recon_blue < 3.5  # bars of 75 % and 25 %, legend swatches aside
    assert starved_purple < recon_blue / 20       # a never-bottleneck group: its swatch only


@pytest.mark.parametrize("decision, kind", [
    ("warm-up", None),
    ("tighten x0.95", "tighten"),
    ("backoff: restored previous table, rate now 2.5%", "backoff"),
    ("hold: rate 6.2% >= 5%, stopping after next epoch", "hold"),
    ("stop", "stop"),
    ("", None),
    (None, None),
])
def test_decision_kind(decision, kind):
    assert plots.decision_kind(decision) == kind


def test_rollback_rate_marks_a_hold(tmp_path):
    hold_orange = (255, 127, 14)  # tab:orange, the 'hold' marker
    history = [record(1, decision="warm-up"), record(2, rollback_rate=0.02)]
    without = read_png(plots.save_rollback_rate(tmp_path / "a.png", history, 0.05))
    history.append(record(3, decision="hold: rate 6.2% >= 5%", rollback_rate=0.062))
    with_hold = read_png(plots.save_rollback_rate(tmp_path / "b.png", history, 0.05))
    assert count_colour(without, hold_orange) == 0
    assert count_colour(with_hold, hold_orange) > 30


def test_pictures_create_nested_folders_and_return_the_path(tmp_path):
    target = tmp_path / "a" / "b" / "c" / "group_balance.png"
    returned = plots.save_group_balance(str(target), [record(1)], GROUPS)
    assert returned == target and target.is_file()
    read_png(target)


def test_traversal_step_labels_name_the_centre():
    labels = [plots._step_label(v) for v in torch.linspace(-3, 3, 11).tolist()]
    assert labels[0] == "-3.0" and labels[-1] == "+3.0"
    assert labels[5] == "0 (μ)"  # linspace gives ~1e-16 there, not "-0.0"
