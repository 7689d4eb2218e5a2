"""The switches that go after the split (configs.py: objective sum, decoder, cycle_goals,
core_target, realism_units, realism_swap_estimate, consistency, decode_batchnorm): each does
what its comment says, and each default leaves the SPEC's system as it was."""
import contextlib
import copy
import json
import math
import sys
from pathlib import Path

import pytest
import torch

import configs
import train
from configs import GROUPS
from conftest import calibrated_trainer, differing, snapshot, violate_evaluations
from imagesets import SyntheticShapes
import losses
from losses import (augment, draw_step, evaluate_goals, forward_measures, real_stats,
                    realism_measures)
from models import (VAE, BatchNorm2d, Discriminator, ModulatedDecoder, batchnorm_reference_rows,
                    frozen_batchnorm_stats)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab" / "experiments"))
import realism_swap_floor  # noqa: E402

X = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def tiny(*switches):
    return configs.parse_args(["--preset", "tiny", *switches])


# --- objective = sum: the control for what the min-barrier adds ------------------------------
def twin(trainer, objective):
    other = train.Trainer(dataclass_with(trainer.cfg, objective=objective), trainer.device)
    other.load_state_dict(copy.deepcopy(trainer.state_dict(2)))
    other.goals = copy.deepcopy(trainer.goals)
    return other


def dataclass_with(cfg, **changes):
    cfg = copy.deepcopy(cfg)
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def step(trainer, monkeypatch):
    with monkeypatch.context() as patch:
        violate_evaluations(patch.setattr, (), others_pass=True)  # the guard accepts
        torch.manual_seed(11)
        trainer.lbo_step(X, train.EpochStats(), "here", print)


def test_the_sum_objective_steps_on_the_mean_over_groups_of_minus_log_score(calibrated,
                                                                           monkeypatch):
    calibrated.lbo_batches = 2  # an odd step next: no discriminator update
    ours, barrier = twin(calibrated, "sum"), twin(calibrated, "lbo")
    reference = twin(calibrated, "sum")
    torch.manual_seed(11)
    _, _, fwd = reference._forward(X)
    evaluation = evaluate_goals(reference.goals, fwd.measures)
    loss = -torch.stack([torch.stack([evaluation.log_scores[g["name"]]
                                      for g in reference.goals if g["group"] == group]).mean()
                         for group in GROUPS]).mean()
    reference.opt.zero_grad(set_to_none=True)
    loss.backward()
    reference.opt.step()
    step(ours, monkeypatch)
    step(barrier, monkeypatch)
    assert differing(snapshot(ours), snapshot(reference)) == []
    # ...and the test can tell the two objectives apart.
    assert differing(snapshot(barrier), snapshot(reference))


def test_the_sum_objective_keeps_calibration_guard_and_tightener(tmp_path):
    assert train.main(["--preset", "tiny", "--objective", "sum", "--epochs", "2",
                       "--output_dir", str(tmp_path)]) == 0
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["objective"] == "sum" and last["decision"] != "none (elbo control)"
    assert last["accepted"] > 0 and "bottleneck" in last


# --- the asymmetric decoder -------------------------------------------------------------------
def asymmetric_vae():
    torch.manual_seed(0)
    vae = VAE(tiny("--decoder", "asymmetric")).eval()
    with torch.no_grad():
        for film in vae.decoder.films:
            film.weight.normal_(0, 0.5)
    return vae


def test_the_asymmetric_decoder_makes_its_map_from_core_and_lets_detail_only_modulate():
    vae = asymmetric_vae()
    assert isinstance(vae.decoder, ModulatedDecoder)
    core = torch.randn(4, vae.core_dim)
    detail_a, detail_b = torch.randn(2, 4, vae.latent_dim - vae.core_dim)
    with torch.no_grad():
        a = vae.decode(torch.cat([core, detail_a], 1))
        b = vae.decode(torch.cat([core, detail_b], 1))
        assert (a - b).abs().max() > 1e-3  # detail does change the image...
        for film in vae.decoder.films:
            film.weight.zero_()
        a = vae.decode(torch.cat([core, detail_a], 1))
        b = vae.decode(torch.cat([core, detail_b], 1))
    assert torch.equal(a, b)  # ...through the per-channel modulation alone
    assert a.shape == (4, 3, 32, 32) and 0 <= a.min() and a.max() <= 1


def test_the_asymmetric_decoder_modulates_every_position_of_a_channel_alike():
    """Detail gives the first stage no map of its own: with the same core, its
    pre-activation under detail b is, channel by channel, one affine map (the same at every
    position) of the one under detail a."""
    vae = asymmetric_vae()
    inputs = []
    # Before the (in-place) activation: what the stage hands it.
    vae.decoder.act.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    core = torch.randn(1, vae.core_dim).repeat(2, 1)
    detail = torch.randn(2, vae.latent_dim - vae.core_dim)
    with torch.no_grad():
        vae.decode(torch.cat([core, detail], 1))
    a, b = (t.flatten(1) for t in inputs[0])  # every stage's, the first stage's first
    centred = a - a.mean(1, keepdim=True)
    slope = (centred * (b - b.mean(1, keepdim=True))).sum(1) / centred.pow(2).sum(1)
    fitted = b.mean(1, keepdim=True) + slope[:, None] * centred
    assert torch.allclose(fitted, b, atol=1e-4)
    assert not torch.allclose(slope, torch.ones_like(slope), atol=1e-3)  # it did modulate


def test_the_asymmetric_decoder_trains_through_the_guard_and_the_joint_decode(tmp_path):
    assert train.main(["--preset", "tiny", "--decoder", "asymmetric", "--epochs", "2",
                       "--output_dir", str(tmp_path)]) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("decoder.films.") for k in state["vae"])
    assert (tmp_path / "cross_reconstruction.png").exists()


# --- decode_batchnorm = reconstructions --------------------------------------------------------
def normalised(rows, x, norm=None, seed=0):
    """(output, running mean, running var) of a training-mode BatchNorm2d with random affine
    parameters on x, its statistics from the first `rows` rows (None: all)."""
    torch.manual_seed(seed)
    norm = norm or BatchNorm2d(x.shape[1])
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.normal_()
    with batchnorm_reference_rows(norm, rows):
        out = norm(x)
    return out, norm.running_mean.clone(), norm.running_var.clone()


def test_reference_rows_normalise_every_row_by_the_first_rows_statistics_alone():
    x = 3 * torch.randn(12, 5, 4, 4, generator=torch.Generator().manual_seed(0)) + 1
    out, mean, var = normalised(4, x)
    alone, alone_mean, alone_var = normalised(None, x[:4])  # an ordinary BN of them alone
    assert torch.allclose(out[:4], alone, atol=1e-5)
    assert torch.allclose(mean, alone_mean) and torch.allclose(var, alone_var)
    # The other rows change neither the reference rows' output nor the statistics...
    other = x.clone()
    other[4:] = 100 * torch.randn(8, 5, 4, 4)
    out2, mean2, var2 = normalised(4, other)
    assert torch.equal(out2[:4], out[:4]) and torch.equal(mean2, mean) and torch.equal(var2, var)
    # ... and each is normalised by the same function: a copy of a reference row decodes
    # exactly as it does (no spurious leak at zero noise).
    other[7] = x[2]
    assert torch.equal(normalised(4, other)[0][7], out[2])
    assert not torch.allclose(normalised(None, x)[0][:4], alone, atol=1e-2)  # all rows: not so


def test_reference_rows_leave_running_statistics_alone_where_frozen_and_eval_unchanged():
    x = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    norm = BatchNorm2d(3)
    with frozen_batchnorm_stats(norm):
        normalised(2, x, norm)
    assert torch.equal(norm.running_mean, torch.zeros(3)) and norm.num_batches_tracked == 0
    norm.eval()
    plain = torch.nn.BatchNorm2d(3).eval()
    plain.load_state_dict(norm.state_dict())
    with batchnorm_reference_rows(norm, 2):
        assert torch.equal(norm(x), plain(x))  # evaluation: the running statistics, as ever


@pytest.mark.parametrize("decoder", ["spec", "asymmetric"])
def test_the_reconstructions_decode_as_in_a_call_of_their_own_under_the_switch(decoder):
    """decode_batchnorm = reconstructions: within the joint decode the reconstructions come
    out as if decoded alone, and the running statistics are theirs; joint (the default):
    normalised with the other four decodes, they do not."""
    results = {}
    for mode in ("joint", "reconstructions"):
        cfg, nets = expressive_nets("--decoder", decoder, "--decode_batchnorm", mode)
        vae = nets[0]
        torch.manual_seed(1)
        draws = draw_step(X, cfg)
        start = copy.deepcopy(vae.decoder.state_dict())
        _, _, _, z, decoded, _ = vae(X, draws.augmented, draws.eps, draws.perm,
                                     draws.core_noise, draws.detail_noise)
        joint_stats = copy.deepcopy(vae.decoder.state_dict())
        vae.decoder.load_state_dict(start)
        alone = vae.decode(z)
        alone_stats = vae.decoder.state_dict()
        results[mode] = (torch.allclose(decoded.chunk(5)[0], alone, atol=1e-5),
                         all(torch.allclose(joint_stats[k].float(), alone_stats[k].float(),
                                            atol=1e-6) for k in joint_stats))
    assert results == {"joint": (False, False), "reconstructions": (True, True)}


# --- cycle goals -------------------------------------------------------------------------------
def expressive_nets(*switches):
    cfg = tiny(*switches)
    torch.manual_seed(0)
    vae = VAE(cfg)
    with torch.no_grad():  # an expressive encoder, not the collapsed one of the init
        vae.encoder.mu.weight.normal_(0, 0.5)
    disc = Discriminator(cfg.disc_channels).eval()
    return cfg, (vae, disc, lambda images: images)


def test_the_cycle_goals_reencode_the_swap_against_x_core_and_the_partner_detail():
    cfg, nets = expressive_nets("--cycle_goals", "true")
    vae, c = nets[0], cfg.core_dim
    torch.manual_seed(1)
    draws = draw_step(X, cfg)
    real = real_stats(X, nets[2], contextlib.nullcontext)
    before = copy.deepcopy(vae.state_dict())
    m = forward_measures(nets, X, real, draws, contextlib.nullcontext).measures
    after_step = copy.deepcopy(vae.state_dict())
    vae.load_state_dict(before)
    with torch.no_grad():  # written out: the swap decoded jointly, then encoded again
        mu, logvar = vae.encode(X)
        z = mu + torch.exp(0.5 * logvar) * draws.eps
        zc, zd = z[:, :c], z[:, c:]
        latents = torch.cat([z, torch.cat([zc, 0 * zd], 1), torch.cat([zc, zd[draws.perm]], 1),
                             torch.cat([zc + draws.core_noise, zd], 1),
                             torch.cat([zc, zd + draws.detail_noise], 1)])
        swapped = vae.decode(latents).chunk(5)[2]
        mu_swap = vae.encode(swapped)[0]

    def mse(a, b):
        return torch.nn.functional.mse_loss(a, b).item()
    assert m["cycle_core"].item() == pytest.approx(mse(mu_swap[:, :c], mu[:, :c]), rel=1e-4)
    assert m["cycle_detail"].item() == pytest.approx(
        mse(mu_swap[:, c:], mu[draws.perm, c:]), rel=1e-4)
    assert m["cycle_detail"].item() != pytest.approx(mse(mu_swap[:, c:], mu[:, c:]), rel=0.01)
    # The re-encoding leaves the running statistics alone: they describe real images.
    vae.load_state_dict(before)
    vae.reencode_swap = False
    forward_measures(nets, X, real, draws, contextlib.nullcontext)
    assert differing({k: v for k, v in vae.state_dict().items()}, after_step) == []


def test_the_cycle_goals_move_the_swap_toward_the_codes_not_the_codes_toward_the_swap():
    """The targets, mu of x, are fixed: with a decoder that draws one grey image whatever
    the code, the swap (and so its code) does not depend on x, and the gradient on the
    encoder's mu bias is the swap side's alone. Were the targets not detached, the bias would
    move both sides alike and get no gradient at all."""
    cfg, nets = expressive_nets("--cycle_goals", "true")
    vae = nets[0]
    with torch.no_grad():
        vae.decoder.net[-2].weight.zero_()  # the last convolution: sigmoid(0) = 0.5 everywhere
        vae.decoder.net[-2].bias.zero_()
    torch.manual_seed(1)
    draws = draw_step(X, cfg)
    real = real_stats(X, nets[2], contextlib.nullcontext)
    m = forward_measures(nets, X, real, draws, contextlib.nullcontext).measures
    for name, dims in (("cycle_core", slice(None, cfg.core_dim)),
                       ("cycle_detail", slice(cfg.core_dim, None))):
        grad, = torch.autograd.grad(m[name], vae.encoder.mu.bias, retain_graph=True)
        assert grad[dims].abs().min() > 0


def test_the_cycle_goals_are_swap_goals_calibrated_like_the_rest(tiny_cfg):
    trainer = calibrated_trainer(dataclass_with(tiny_cfg, cycle_goals=True))
    cycle = {g["name"]: g for g in trainer.goals if g["name"].startswith("cycle_")}
    assert set(cycle) == {"cycle_core", "cycle_detail"}
    assert all(g["group"] == "swap" and isinstance(g["scale"], float) for g in cycle.values())
    # Without the switch (or with the swap group dropped) there are none.
    assert not [g for g in configs.goal_table(tiny()) if g["name"].startswith("cycle_")]
    assert not [g for g in configs.goal_table(tiny("--cycle_goals", "true", "--drop_groups",
                                                   "swap")) if g["name"].startswith("cycle_")]


# --- core_target ---------------------------------------------------------------------------------
def test_core_target_structure_asks_the_core_decode_for_edges_not_colours():
    def core_goals(cfg):
        return [g["name"] for g in configs.goal_table(cfg) if g["group"] == "core"]
    assert core_goals(tiny()) == ["core_mse", "core_edge"]
    assert core_goals(tiny("--core_target", "structure")) == ["core_edge"]
    # The table itself, which docs/settings.md lists, stays the SPEC's.
    assert [g["name"] for g in tiny("--core_target", "structure").goals] == \
        [g["name"] for g in configs.default_goals()]


# --- realism units and the swap's noise floor ---------------------------------------------------
def shapes(count, seed):
    data = SyntheticShapes(count, 32, seed=seed)
    return torch.stack([data[i] for i in range(count)])


def realism(disc, recon, swapped, x, **options):
    real = real_stats(x, lambda images: images, contextlib.nullcontext, disc, **options)
    return [v.item() for v in realism_measures(disc, recon, swapped, real)]


def test_real_pair_units_score_a_reconstruction_by_another_real_image_as_one():
    torch.manual_seed(0)
    disc = Discriminator((8, 8, 16, 16)).eval()
    x = shapes(8, 0)
    neighbour = x.roll(1, 0)  # each image's "reconstruction" is another real image
    assert realism(disc, neighbour, x, x, units="real_pairs")[0] == pytest.approx(1, rel=1e-5)
    assert realism(disc, x, x, x, units="real_pairs")[0] == pytest.approx(0, abs=1e-6)
    assert realism(disc, neighbour, x, x)[0] != pytest.approx(1, rel=0.05)  # real_power


def test_the_unbiased_swap_estimate_has_no_batch_size_floor():
    """Two disjoint real batches of the same images: the plain squared distance of their
    feature means is about (Var_a + Var_b) / B, so it falls with B; the unbiased one is about
    0 at every batch size."""
    torch.manual_seed(0)
    disc = Discriminator((8, 8, 16, 16)).eval()
    pool = shapes(640, 1)
    floor = {}
    for batch in (8, 64):
        for estimate in ("plain", "unbiased"):
            values = []
            for draw in range(5):
                order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(draw))
                a, b = pool[order[:batch]], pool[order[batch:2 * batch]]
                with torch.no_grad():
                    values.append(realism(disc, b, b, a, swap_estimate=estimate)[1])
            floor[batch, estimate] = sum(values) / len(values)
    assert floor[8, "plain"] > 4 * floor[64, "plain"] > 0
    for batch in (8, 64):
        assert abs(floor[batch, "unbiased"]) < 0.25 * floor[batch, "plain"]


# --- consistency = split: each code unchanged by what the other carries ------------------------
def test_split_consistency_encodes_jittered_images_for_core_and_flipped_ones_for_detail():
    cfg = tiny("--consistency", "split")
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    draws = draw_step(x, cfg)
    jittered, flipped = draws.augmented.chunk(2)
    # Detail's images are x itself, flipped left-right and/or upside down (all four kinds).
    kinds = [next(k for k, f in enumerate((lambda v: v, lambda v: v.flip(2),
                                           lambda v: v.flip(1), lambda v: v.flip(1, 2)))
                  if torch.equal(f(v), w)) for v, w in zip(x, flipped)]
    assert set(kinds) == {0, 1, 2, 3}
    # Core's are colour-jittered, never flipped: closer to x than to its mirror image.
    assert not torch.equal(jittered, x)
    to_x, to_mirror = ((jittered - t).abs().mean((1, 2, 3)) for t in (x, x.flip(3)))
    assert (to_x < to_mirror).all()
    # The SPEC's: one batch for core, about half of it flipped left-right.
    torch.manual_seed(3)
    spec = draw_step(x, tiny()).augmented
    to_x, to_mirror = ((spec - t).abs().mean((1, 2, 3)) for t in (x, x.flip(3)))
    assert len(spec) == len(x) and 10 < int((to_mirror < to_x).sum()) < 54


def test_jitter_scale_widens_the_colour_jitter_the_consistency_goals_draw():
    x = torch.full((256, 3, 16, 16), 0.5)
    x[:, 0] = 0.3  # a colour, so that saturation and hue move it too
    for switches in ((), ("--consistency", "split")):
        wide = tiny(*switches, "--jitter_scale", "4")
        torch.manual_seed(4)
        drawn = losses.consistency_inputs(x, wide)[:len(x)]
        torch.manual_seed(4)
        assert torch.equal(drawn, augment(x, flip=not switches, spread=4))
    torch.manual_seed(4)
    narrow = augment(x, flip=False)
    torch.manual_seed(4)
    spread4 = augment(x, flip=False, spread=4)

    def moved(images):  # how far each image's mean colour moved, on average
        return (images.mean((2, 3)) - x.mean((2, 3))).abs().mean().item()

    def hue(images):  # the angle of each image's mean colour in YIQ's chroma plane
        r, g, b = images.mean((2, 3)).unbind(1)
        return torch.atan2(0.211 * r - 0.523 * g + 0.312 * b, 0.596 * r - 0.274 * g - 0.322 * b)

    def turned(images):  # how far each image's hue turned, on average
        turn = hue(images) - hue(x)
        return torch.remainder(turn + math.pi, 2 * math.pi).sub(math.pi).abs().mean()
    assert moved(spread4) > 2.5 * moved(narrow) > 0
    assert turned(spread4) > 2.5 * turned(narrow) > 0


def consistency_measures_and_codes(*switches, mu_scale=1.0):
    """The step's measures with consistency = split, and mu of x and of its variants written
    out (x, then both kinds of variant in one frozen pass), for expressive nets whose mu head
    is scaled by mu_scale. Also returns core_dim."""
    cfg, nets = expressive_nets("--consistency", "split", *switches)
    vae = nets[0]
    with torch.no_grad():
        vae.encoder.mu.weight.mul_(mu_scale)
    torch.manual_seed(1)
    draws = draw_step(X, cfg)
    real = real_stats(X, nets[2], contextlib.nullcontext)
    before = copy.deepcopy(vae.state_dict())
    m = forward_measures(nets, X, real, draws, contextlib.nullcontext).measures
    vae.load_state_dict(before)
    with torch.no_grad():
        mu = vae.encode(X)[0]
        with frozen_batchnorm_stats(vae):
            mu_variants = vae.encode(draws.augmented)[0]
    return m, mu, mu_variants, cfg.core_dim


def test_detail_consistency_compares_mu_detail_of_x_and_of_its_flips():
    m, mu, mu_variants, c = consistency_measures_and_codes()
    b = len(X)

    def mse(a, v):
        return torch.nn.functional.mse_loss(a, v).item()
    assert m["detail_consistency"].item() == pytest.approx(
        mse(mu[:, c:], mu_variants[b:, c:]), rel=1e-4)
    assert m["core_consistency"].item() == pytest.approx(
        mse(mu[:, :c], mu_variants[:b, :c]), rel=1e-4)
    assert m["detail_consistency"].item() != pytest.approx(
        mse(mu[:, c:], mu_variants[:b, c:]), rel=0.01)


def consistency_goals(units, mu_scale):
    """core_consistency and detail_consistency with consistency_units = units and the mu head
    scaled by mu_scale, and the written-out mean of each dim's squared change over its batch
    variance."""
    m, mu, mu_variants, c = consistency_measures_and_codes(
        "--consistency_units", units, mu_scale=mu_scale)
    b = len(X)

    def in_spread_units(code, moved):
        return ((code - moved).pow(2) / code.var(0)).mean().item()
    return (m["core_consistency"].item(), m["detail_consistency"].item(),
            in_spread_units(mu[:, :c], mu_variants[:b, :c]),
            in_spread_units(mu[:, c:], mu_variants[b:, c:]))


def test_consistency_in_spread_units_is_each_dims_change_over_its_spread():
    core, detail, core_written, detail_written = consistency_goals("spread", 1.0)
    assert core == pytest.approx(core_written, rel=1e-4)
    assert detail == pytest.approx(detail_written, rel=1e-4)


def test_shrinking_the_codes_lowers_plain_consistency_but_not_the_spread_units():
    plain, plain_shrunk = consistency_goals("plain", 1.0), consistency_goals("plain", 0.1)
    spread, spread_shrunk = consistency_goals("spread", 1.0), consistency_goals("spread", 0.1)
    for goal in (0, 1):  # core, detail
        assert plain_shrunk[goal] == pytest.approx(plain[goal] / 100, rel=1e-3)
        assert spread_shrunk[goal] == pytest.approx(spread[goal], rel=1e-3)


def test_detail_consistency_is_a_latent_goal_calibrated_like_core_consistency(tiny_cfg):
    trainer = calibrated_trainer(dataclass_with(tiny_cfg, consistency="split"))
    goal, = [g for g in trainer.goals if g["name"] == "detail_consistency"]
    assert goal["group"] == "latent" and isinstance(goal["scale"], float) and goal["scale"] > 0
    assert "detail_consistency" not in [g["name"] for g in configs.goal_table(tiny())]
    assert "detail_consistency" not in [g["name"] for g in configs.goal_table(
        tiny("--consistency", "split", "--drop_groups", "latent"))]


def test_consistency_group_moves_both_consistency_goals_and_drops_with_their_group():
    def groups(*switches):
        return {g["name"]: g["group"] for g in configs.goal_table(
            tiny("--consistency", "split", *switches))}
    spec_groups = groups()
    moved = groups("--consistency_group", "swap")
    assert spec_groups["core_consistency"] == spec_groups["detail_consistency"] == "latent"
    assert moved["core_consistency"] == moved["detail_consistency"] == "swap"
    assert {n: g for n, g in moved.items() if n not in configs.CONSISTENCY_GOALS} == \
        {n: g for n, g in spec_groups.items() if n not in configs.CONSISTENCY_GOALS}
    # They go and stay with the group that scores them.
    assert "core_consistency" in groups("--consistency_group", "swap", "--drop_groups", "latent")
    assert not set(configs.CONSISTENCY_GOALS) & set(
        groups("--consistency_group", "swap", "--drop_groups", "swap"))


def test_every_split_switch_defaults_to_the_spec_system():
    cfg = configs.Config()
    assert (cfg.objective, cfg.decoder, cfg.cycle_goals, cfg.core_target, cfg.realism_units,
            cfg.realism_swap_estimate, cfg.consistency, cfg.consistency_units,
            cfg.consistency_group, cfg.consistency_calibration, cfg.decode_batchnorm) == (
        "lbo", "spec", False, "image", "real_power", "plain", "spec", "plain", "latent", 1.0,
        "joint")
    assert configs.goal_table(cfg) == cfg.goals


def test_the_floor_benchmark_reports_both_estimates_at_both_batch_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(realism_swap_floor, "BATCHES", (8, 32))
    out = tmp_path / "floor.md"
    realism_swap_floor.main(["--draws", "3", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 8 |")
            or line.startswith("| 32 |")]
    plain = [float(row.split("|")[2].split("±")[0]) for row in rows]
    assert len(rows) == 2 and plain[0] > 2 * plain[1] > 0  # the plain floor falls with B
    assert f"command: `python {realism_swap_floor.COMMAND} --draws 3 --out" in out.read_text()
    assert realism_swap_floor.COMMAND == "lab/experiments/realism_swap_floor.py"
